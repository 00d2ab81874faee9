package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/move"
	"github.com/8thdegree/meridian/shardmgr/shardlock"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
)

// defaultNodeHold is the API nodes' write hold when MERIDIAN_FREEZE_WAIT is not set (api config).
const defaultNodeHold = 2 * time.Second

// runner builds a move runner for the command line: progress to out, MERIDIAN_FAULT honoured.
func (o *options) runner(env Env, maxPause time.Duration, progress func(move.Progress)) (*move.Runner, error) {
	return o.runnerWith(env, maxPause, progress, move.ParseStep)
}

// runnerWith is runner with MERIDIAN_FAULT read by parse (a move's steps, or a pin's).
func (o *options) runnerWith(env Env, maxPause time.Duration, progress func(move.Progress), parse func(string) (move.Step, error)) (*move.Runner, error) {
	c, err := o.consulClient()
	if err != nil {
		return nil, err
	}
	st, err := o.store()
	if err != nil {
		return nil, err
	}
	cfg := move.DefaultConfig()
	cfg.Consul, cfg.Topology = c, st
	cfg.Prefix, cfg.LockKey, cfg.PinPrefix = o.movesPrefix, o.lockKey, o.pinsPrefix
	cfg.Logger = o.logger(env)
	cfg.Progress = progress
	if maxPause > 0 {
		cfg.MaxPause = maxPause
	}
	if fault := env.Getenv("MERIDIAN_FAULT"); fault != "" {
		point, err := parse(fault)
		if err != nil {
			return nil, usagef("MERIDIAN_FAULT: %v", err)
		}
		cfg.Fault = func(s move.Step) bool {
			if s != point {
				return false
			}
			fmt.Fprintf(env.Stderr, "shardmgr: MERIDIAN_FAULT=%s: exiting right after step %s, as a crash would\n", point, s)
			env.exit(ExitError)
			return true // an Exit that returns (tests): the runner stops as killed
		}
	}
	return move.New(cfg)
}

func (env Env) exit(code int) {
	if env.Exit != nil {
		env.Exit(code)
		return
	}
	os.Exit(code)
}

func newMoveCmd(o *options, env Env) *cobra.Command {
	var to, resume, abort string
	var yes bool
	var maxPause time.Duration
	cmd := &cobra.Command{
		Use:   "move <keyrange> --to <shard> | --resume <id> | --abort <id>",
		Short: "Move a keyrange to another shard of its region online, or resume or abort a move",
		Long: `Move a keyrange to another shard of the same region while it serves: copy with logical
replication, catch up, verify, freeze for a cutover bounded by --max-pause, flip, clean up.
The move's ID is printed first; an interrupted move continues with --resume <id>, or rolls back
with --abort <id> (before its flip only). See docs/moves.md.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			modes := 0
			for _, set := range []bool{len(args) == 1, resume != "", abort != ""} {
				if set {
					modes++
				}
			}
			if modes != 1 {
				return usagef("give a keyrange with --to <shard>, or --resume <id>, or --abort <id>")
			}
			if len(args) == 1 && to == "" {
				return usagef("--to <shard> is required with a keyrange")
			}
			if len(args) == 0 && to != "" {
				return usagef("--to goes with a keyrange, not with --resume or --abort")
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
			// A move takes as long as its data: --timeout bounds it only when given.
			ctx := cmd.Context()
			if cmd.Flags().Changed("timeout") {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, o.timeout)
				defer cancel()
			}
			pr := newProgressPrinter(env.Stdout, o.output == "json")
			defer pr.finish()
			r, err := o.runner(env, maxPause, pr.report)
			if err != nil {
				return err
			}
			var m *move.Move
			switch {
			case resume != "":
				m, err = r.Resume(ctx, resume)
			case abort != "":
				if !yes {
					if err := confirm(env, fmt.Sprintf("Abort move %s: drop its replication and the rows it copied, and serve the keyrange from its source?", abort)); err != nil {
						return err
					}
				}
				m, err = r.Abort(ctx, abort)
			default:
				kr, perr := shardkey.ParseKeyRange(args[0])
				if perr != nil {
					return usagef("keyrange %q: %v", args[0], perr)
				}
				if !yes {
					if err := confirm(env, fmt.Sprintf("Move keyrange %s to shard %s (online; writes pause at most %s at the cutover)?", kr, to, maxPause)); err != nil {
						return err
					}
				}
				m, err = r.Start(ctx, kr, to)
			}
			pr.finish()
			if m != nil {
				if o.output == "json" {
					if jerr := writeJSON(env.Stdout, moveJSON(m)); jerr != nil {
						return jerr
					}
				} else {
					printMove(env.Stdout, m)
				}
			}
			return moveError(err)
		},
	}
	f := cmd.Flags()
	f.StringVar(&to, "to", "", "target shard (same region as the keyrange's shard)")
	f.StringVar(&resume, "resume", "", "continue the interrupted move with this ID")
	f.StringVar(&abort, "abort", "", "roll back the move with this ID (before its flip)")
	f.BoolVar(&yes, "yes", false, "do not ask for confirmation")
	f.DurationVar(&maxPause, "max-pause", time.Second, "bound of the cutover's write pause; a cutover that would overrun it is rolled back and retried")
	return cmd
}

// moveError turns the runner's errors into the command's: what happened and what to do next.
func moveError(err error) error {
	var held *shardlock.HeldError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, move.ErrRefused):
		return fmt.Errorf("%w (nothing was changed)", err)
	case errors.As(err, &held):
		return fmt.Errorf("%w: another operation on the shards is running (nothing was changed)", err)
	}
	return err
}

// confirm asks on a terminal; elsewhere it wants --yes.
func confirm(env Env, question string) error {
	in, ok := env.Stdin.(*os.File)
	if !ok || !isatty.IsTerminal(in.Fd()) {
		return usagef("%s pass --yes to confirm", question)
	}
	fmt.Fprintf(env.Stdout, "%s [y/N] ", question)
	line, _ := bufio.NewReader(in).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
		return errors.New("not confirmed; nothing was changed")
	}
	return nil
}

// progressPrinter shows a bar for the copy on a terminal, plain lines otherwise (and nothing but
// the final JSON with --output json).
type progressPrinter struct {
	mu       sync.Mutex
	w        io.Writer
	quiet    bool
	terminal bool
	bar      *progressbar.ProgressBar
	lastLine time.Time
	lastStep move.Step
}

func newProgressPrinter(w io.Writer, quiet bool) *progressPrinter {
	f, ok := w.(*os.File)
	return &progressPrinter{w: w, quiet: quiet, terminal: ok && isatty.IsTerminal(f.Fd())}
}

func (p *progressPrinter) report(ev move.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.quiet {
		return
	}
	if ev.Message != "" {
		p.finishBar()
		fmt.Fprintln(p.w, ev.Message)
		return
	}
	switch ev.Step {
	case move.StepCopy:
		if p.terminal {
			if p.bar == nil {
				p.bar = progressbar.NewOptions64(max(ev.RowsTotal, 1), progressbar.OptionSetWriter(p.w),
					progressbar.OptionSetDescription("copy"), progressbar.OptionShowCount(), progressbar.OptionShowIts(),
					progressbar.OptionSetItsString("rows"), progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(100*time.Millisecond),
					progressbar.OptionFullWidth())
			}
			_ = p.bar.Set64(ev.RowsCopied)
			return
		}
		if time.Since(p.lastLine) >= 2*time.Second || ev.RowsCopied == ev.RowsTotal && p.lastStep != move.StepCopy {
			fmt.Fprintf(p.w, "copy: %d of %d rows, %.0f rows/s, ETA %s\n", ev.RowsCopied, ev.RowsTotal, ev.RowsPerSecond, ev.ETA.Round(time.Second))
			p.lastLine, p.lastStep = time.Now(), ev.Step
		}
	case move.StepCatchup:
		p.finishBar()
		if time.Since(p.lastLine) >= 2*time.Second || p.lastStep != move.StepCatchup {
			fmt.Fprintf(p.w, "catch-up: lag %s\n", bytesText(ev.LagBytes))
			p.lastLine, p.lastStep = time.Now(), ev.Step
		}
	}
}

func (p *progressPrinter) finishBar() {
	if p.bar != nil {
		_ = p.bar.Finish()
		fmt.Fprintln(p.w)
		p.bar = nil
	}
}

func (p *progressPrinter) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.finishBar()
}

func bytesText(n int64) string {
	switch {
	case n < 0:
		return "unknown"
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
}

type moveRow struct {
	ID           string            `json:"id"`
	KeyRange     string            `json:"keyrange"`
	Source       string            `json:"source"`
	Target       string            `json:"target"`
	Region       string            `json:"region"`
	Status       string            `json:"status"`
	Step         string            `json:"step"`
	Steps        []move.StepTiming `json:"steps"`
	WritePauseMS float64           `json:"write_pause_ms"`
	Attempts     int               `json:"freeze_attempts"`
	RowsCopied   map[string]int64  `json:"rows_copied,omitempty"`
	RowsDeleted  map[string]int64  `json:"rows_deleted,omitempty"`
	Error        string            `json:"error,omitempty"`
	Created      time.Time         `json:"created"`
	Updated      time.Time         `json:"updated"`
}

func moveJSON(m *move.Move) moveRow {
	steps := m.Steps
	if steps == nil {
		steps = []move.StepTiming{}
	}
	return moveRow{ID: m.ID, KeyRange: m.KeyRange.String(), Source: m.Source, Target: m.Target, Region: m.Region,
		Status: string(m.Status), Step: string(m.Step), Steps: steps, WritePauseMS: m.WritePauseMillis, Attempts: m.FreezeAttempts,
		RowsCopied: m.RowsCopied, RowsDeleted: m.RowsDeleted, Error: m.Error, Created: m.Created, Updated: m.Updated}
}

func printMove(w io.Writer, m *move.Move) {
	fmt.Fprintf(w, "move %s: %s, keyrange %s %s → %s", m.ID, m.Status, m.KeyRange, m.Source, m.Target)
	if m.WritePauseMillis > 0 {
		fmt.Fprintf(w, ", write pause %.1f ms", m.WritePauseMillis)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tTOOK")
	for _, s := range m.Steps {
		took := "running"
		if !s.Finished.IsZero() {
			took = fmt.Sprintf("%.1f ms", s.Millis)
		}
		fmt.Fprintf(tw, "%s\t%s\n", s.Step, took)
	}
	tw.Flush()
}

func stepsText(m *move.Move) string {
	parts := make([]string, 0, len(m.Steps))
	for _, s := range m.Steps {
		if s.Finished.IsZero() {
			parts = append(parts, string(s.Step)+" …")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %s", s.Step, time.Duration(s.Millis*float64(time.Millisecond)).Round(time.Millisecond)))
	}
	return strings.Join(parts, ", ")
}

func newMovesCmd(o *options, env Env) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "moves",
		Short: "Running moves (--all: past ones too) with their state, step timings and write pause",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := withTimeout(cmd, o)
			defer cancel()
			r, err := o.runner(env, 0, nil)
			if err != nil {
				return err
			}
			ms, err := r.List(ctx, all)
			if err != nil {
				return err
			}
			left, lerr := leftovers(ctx, o)
			if o.output == "json" {
				rows := make([]moveRow, len(ms))
				for i, m := range ms {
					rows[i] = moveJSON(m)
				}
				if err := writeJSON(env.Stdout, map[string]any{"moves": rows, "replication_objects": left}); err != nil {
					return err
				}
				return lerr
			}
			tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATUS\tSTEP\tKEYRANGE\tSOURCE → TARGET\tPAUSE\tSTEPS")
			for _, m := range ms {
				pause := "-"
				if m.WritePauseMillis > 0 {
					pause = fmt.Sprintf("%.1f ms", m.WritePauseMillis)
				}
				step := string(m.Step)
				if step == "" {
					step = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s → %s\t%s\t%s\n", m.ID, m.Status, step, m.KeyRange, m.Source, m.Target, pause, stepsText(m))
			}
			tw.Flush()
			if len(ms) == 0 {
				if all {
					fmt.Fprintln(env.Stdout, "no moves recorded")
				} else {
					fmt.Fprintln(env.Stdout, "no move running (--all lists past ones)")
				}
			}
			for _, m := range ms {
				if m.Error != "" && !m.Status.Finished() {
					fmt.Fprintf(env.Stdout, "%s: %s\n", m.ID, m.Error)
				}
			}
			for _, l := range left {
				fmt.Fprintf(env.Stdout, "replication object on %s: %s\n", l.Shard, l.Leftover)
			}
			// Pins are listed by 'shardmgr pins'; an unfinished one is worth a line here too, since
			// it refuses moves of the keyranges that hold its user.
			if pins, err := r.Pins(ctx, false); err == nil {
				for _, p := range pins {
					fmt.Fprintf(env.Stdout, "pin %s of user %s is %s after step %q: see 'shardmgr pins'\n", p.ID, p.User, p.Status, p.Step)
				}
			}
			return lerr
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "past moves too")
	return cmd
}

type shardLeftover struct {
	Shard string `json:"shard"`
	move.Leftover
}

// leftovers lists the replication objects of moves on every shard (those of a running move are
// expected; after it, none should be left).
func leftovers(ctx context.Context, o *options) ([]shardLeftover, error) {
	t, _, err := o.load(ctx)
	if err != nil {
		return nil, err
	}
	out := []shardLeftover{}
	var errs []error
	for _, s := range t.Shards {
		pw, err := shardpool.PasswordFromEnvOrFile(s.Conn)
		if err != nil {
			errs = append(errs, fmt.Errorf("shard %s: %w", s.Name, err))
			continue
		}
		err = func() error {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			pool, err := pgxpool.New(sctx, shardpool.ConnString(s.Conn, pw))
			if err != nil {
				return err
			}
			defer pool.Close()
			ls, err := move.Leftovers(sctx, pool)
			for _, l := range ls {
				out = append(out, shardLeftover{Shard: s.Name, Leftover: l})
			}
			return err
		}()
		if err != nil {
			errs = append(errs, fmt.Errorf("shard %s: listing replication objects: %w", s.Name, err))
		}
	}
	return out, errors.Join(errs...)
}

// takeShardLock takes the shard lock for an operation that must not run beside a move (migrate),
// and refuses while a move is not finished: a schema change under a move's replication would
// break its copy, and a paused move resumes against the schema it checked.
func (o *options) takeShardLock(ctx context.Context, env Env, what string) (*shardlock.Lock, error) {
	c, err := o.consulClient()
	if err != nil {
		return nil, err
	}
	l, err := shardlock.Acquire(ctx, c, o.lockKey, what)
	if err != nil {
		var held *shardlock.HeldError
		if errors.As(err, &held) {
			return nil, fmt.Errorf("%w: a move or another shard operation is running; %s waits for it (nothing was changed)", err, what)
		}
		return nil, err
	}
	r, err := o.runner(env, 0, nil)
	if err == nil {
		var ms []*move.Move
		if ms, err = r.List(ctx, false); err == nil && len(ms) > 0 {
			err = fmt.Errorf("move %s (keyrange %s) is %s and not finished: resume or abort it before %s (nothing was changed)", ms[0].ID, ms[0].KeyRange, ms[0].Status, what)
		}
	}
	if err != nil {
		_ = l.Release(context.WithoutCancel(ctx))
		return nil, err
	}
	return l, nil
}
