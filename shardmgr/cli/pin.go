package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/move"
)

func newPinCmd(o *options, env Env) *cobra.Command {
	var region, resume, abort string
	var yes bool
	var maxPause time.Duration
	cmd := &cobra.Command{
		Use:   "pin <user-id> --region <r> | --resume <id> | --abort <id>",
		Short: "Relocate one user's data to another region (residency), or resume or abort a pin",
		Long: `Relocate one user's data to a shard of another region under a new ksid (the region's code
over the same 56 bits): copy every row the user owns, verify, hold the user's writes for a
cutover bounded by --max-pause, flip the topology's relocation map (the user's IDs and tokens
keep working through it), point the email directory at the region, delete the source rows and
write an audit record. The pin's ID is printed first; an interrupted pin continues with
--resume <id>, or rolls back with --abort <id> (before its flip only). See docs/pin.md.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			modes := 0
			for _, set := range []bool{len(args) == 1, resume != "", abort != ""} {
				if set {
					modes++
				}
			}
			if modes != 1 {
				return usagef("give a user ID with --region <r>, or --resume <id>, or --abort <id>")
			}
			if len(args) == 1 && region == "" {
				return usagef("--region <r> is required with a user ID")
			}
			if len(args) == 0 && region != "" {
				return usagef("--region goes with a user ID, not with --resume or --abort")
			}
			var user shardkey.ID
			if len(args) == 1 {
				var err error
				if user, err = shardkey.ParseIDOfKind(args[0], shardkey.KindUser); err != nil {
					return usagef("user ID %q: %v", args[0], err)
				}
			}
			hold := defaultNodeHold
			if v := env.Getenv("MERIDIAN_FREEZE_WAIT"); v != "" {
				d, err := time.ParseDuration(v)
				if err != nil {
					return usagef("MERIDIAN_FREEZE_WAIT %q: %v", v, err)
				}
				hold = d
			}
			if maxPause <= 0 || maxPause >= hold {
				return usagef("--max-pause %s must be positive and below the nodes' write hold %s (MERIDIAN_FREEZE_WAIT), so that no held write times out", maxPause, hold)
			}
			ctx := cmd.Context()
			if cmd.Flags().Changed("timeout") {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, o.timeout)
				defer cancel()
			}
			if len(args) == 1 {
				// An unknown region is a mistake in the command line: say so before anything else.
				t, _, err := o.load(ctx)
				if err != nil {
					return err
				}
				if _, ok := t.Region(region); !ok {
					names := make([]string, len(t.Regions))
					for i, r := range t.Regions {
						names[i] = r.Name
					}
					sort.Strings(names)
					return usagef("--region %q is not a region of the topology (regions: %v)", region, names)
				}
			}
			pr := newProgressPrinter(env.Stdout, o.output == "json")
			defer pr.finish()
			r, err := o.runnerWith(env, maxPause, pr.report, move.ParsePinStep)
			if err != nil {
				return err
			}
			var p *move.Pin
			switch {
			case resume != "":
				p, err = r.ResumePin(ctx, resume)
			case abort != "":
				if !yes {
					if err := confirm(env, fmt.Sprintf("Abort pin %s: delete the rows it copied and serve the user from its source region?", abort)); err != nil {
						return err
					}
				}
				p, err = r.AbortPin(ctx, abort)
			default:
				if !yes {
					if err := confirm(env, fmt.Sprintf("Pin user %s to region %s (their data is copied there and deleted from where it is; writes pause at most %s)?", user, region, maxPause)); err != nil {
						return err
					}
				}
				p, err = r.Pin(ctx, user, region)
			}
			pr.finish()
			if p != nil {
				if o.output == "json" {
					if jerr := writeJSON(env.Stdout, pinJSON(p)); jerr != nil {
						return jerr
					}
				} else {
					printPin(env.Stdout, p)
				}
			}
			return pinError(err)
		},
	}
	f := cmd.Flags()
	f.StringVar(&region, "region", "", "target region")
	f.StringVar(&resume, "resume", "", "continue the interrupted pin with this ID")
	f.StringVar(&abort, "abort", "", "roll back the pin with this ID (before its flip)")
	f.BoolVar(&yes, "yes", false, "do not ask for confirmation")
	f.DurationVar(&maxPause, "max-pause", time.Second, "bound of the user's write pause at the cutover; a cutover that would overrun it is rolled back and retried")
	return cmd
}

// pinError turns the runner's errors into the command's: what happened and what to do next.
// An unknown region is a usage error; the rest is a move's.
func pinError(err error) error {
	if errors.Is(err, move.ErrUnknownRegion) {
		return usageError{fmt.Errorf("%w (nothing was changed)", err)}
	}
	return moveError(err)
}

type pinRow struct {
	ID             string            `json:"id"`
	User           string            `json:"user"`
	From           string            `json:"from_ksid"`
	To             string            `json:"to_ksid"`
	SourceRegion   string            `json:"source_region"`
	TargetRegion   string            `json:"target_region"`
	Source         string            `json:"source"`
	Target         string            `json:"target"`
	Status         string            `json:"status"`
	Step           string            `json:"step"`
	Steps          []move.StepTiming `json:"steps"`
	WritePauseMS   float64           `json:"write_pause_ms"`
	FreezeAttempts int               `json:"freeze_attempts"`
	RowsCopied     map[string]int64  `json:"rows_copied,omitempty"`
	RowsDeleted    map[string]int64  `json:"rows_deleted,omitempty"`
	ClaimsUpdated  int64             `json:"claims_updated"`
	Error          string            `json:"error,omitempty"`
	Created        time.Time         `json:"created"`
	Updated        time.Time         `json:"updated"`
}

func pinJSON(p *move.Pin) pinRow {
	steps := p.Steps
	if steps == nil {
		steps = []move.StepTiming{}
	}
	return pinRow{ID: p.ID, User: p.User.String(), From: p.From.String(), To: p.To.String(), SourceRegion: p.SourceRegion, TargetRegion: p.TargetRegion,
		Source: p.Source, Target: p.Target, Status: string(p.Status), Step: string(p.Step), Steps: steps, WritePauseMS: p.WritePauseMillis,
		FreezeAttempts: p.FreezeAttempts, RowsCopied: p.RowsCopied, RowsDeleted: p.RowsDeleted, ClaimsUpdated: p.ClaimsUpdated,
		Error: p.Error, Created: p.Created, Updated: p.Updated}
}

func printPin(w io.Writer, p *move.Pin) {
	fmt.Fprintf(w, "pin %s: %s, user %s %s/%s (ksid %s) → %s/%s (ksid %s)", p.ID, p.Status, p.User, p.SourceRegion, p.Source, p.From, p.TargetRegion, p.Target, p.To)
	if p.WritePauseMillis > 0 {
		fmt.Fprintf(w, ", write pause %.1f ms", p.WritePauseMillis)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tTOOK")
	for _, s := range p.Steps {
		took := "running"
		if !s.Finished.IsZero() {
			took = fmt.Sprintf("%.1f ms", s.Millis)
		}
		fmt.Fprintf(tw, "%s\t%s\n", s.Step, took)
	}
	tw.Flush()
	if len(p.RowsCopied) > 0 {
		names := make([]string, 0, len(p.RowsCopied))
		for t := range p.RowsCopied {
			names = append(names, t)
		}
		sort.Strings(names)
		fmt.Fprint(w, "rows copied:")
		for _, t := range names {
			fmt.Fprintf(w, " %s %d", t, p.RowsCopied[t])
		}
		fmt.Fprintln(w)
	}
	if p.Status == move.Done {
		fmt.Fprintf(w, "email claims updated: %d; audit record residency.pin written on %s\n", p.ClaimsUpdated, p.Target)
	}
}

func pinStepsText(p *move.Pin) string {
	return stepsText(&move.Move{Steps: p.Steps})
}

func newPinsCmd(o *options, env Env) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "pins",
		Short: "Running pins (--all: past ones too) with their state, step timings and write pause",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := withTimeout(cmd, o)
			defer cancel()
			r, err := o.runner(env, 0, nil)
			if err != nil {
				return err
			}
			ps, err := r.Pins(ctx, all)
			if err != nil {
				return err
			}
			if o.output == "json" {
				rows := make([]pinRow, len(ps))
				for i, p := range ps {
					rows[i] = pinJSON(p)
				}
				return writeJSON(env.Stdout, map[string]any{"pins": rows})
			}
			tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATUS\tSTEP\tUSER\tFROM → TO\tPAUSE\tSTEPS")
			for _, p := range ps {
				pause := "-"
				if p.WritePauseMillis > 0 {
					pause = fmt.Sprintf("%.1f ms", p.WritePauseMillis)
				}
				step := string(p.Step)
				if step == "" {
					step = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s/%s → %s/%s\t%s\t%s\n", p.ID, p.Status, step, p.User, p.SourceRegion, p.Source, p.TargetRegion, p.Target, pause, pinStepsText(p))
			}
			tw.Flush()
			if len(ps) == 0 {
				if all {
					fmt.Fprintln(env.Stdout, "no pins recorded")
				} else {
					fmt.Fprintln(env.Stdout, "no pin running (--all lists past ones)")
				}
			}
			for _, p := range ps {
				if p.Error != "" && !p.Status.Finished() {
					fmt.Fprintf(env.Stdout, "%s: %s\n", p.ID, p.Error)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "past pins too")
	return cmd
}
