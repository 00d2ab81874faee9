package plan

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteText prints the plan as `shardmgr plan` shows it: the numbered steps with their reasons, the
// balance per shard before and after, and the notes.
func (p *Plan) WriteText(w io.Writer) error {
	region := "every region"
	if p.Options.Region != "" {
		region = "region " + p.Options.Region
	}
	fmt.Fprintf(w, "plan for %s from topology version %d: %d steps (split above %s of a region, move above the mean +%s)\n",
		region, p.Version, len(p.Steps), pct(p.Options.SplitShare), pct(p.Options.MoveExcess))
	for i, st := range p.Steps {
		switch st.Kind {
		case KindSplit:
			fmt.Fprintf(w, "\n%2d. split %s on %s at %s -> %s, %s\n", i+1, st.KeyRange, st.Shard, boundHex(st.At), st.Halves[0], st.Halves[1])
		case KindMove:
			fmt.Fprintf(w, "\n%2d. move  %s from %s to %s\n", i+1, st.KeyRange, st.Shard, st.Target)
		}
		fmt.Fprintf(w, "    why: %s\n", st.Why)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tSHARD\tKEYRANGES BEFORE\tKEYRANGES AFTER\tROWS BEFORE\tROWS AFTER\tREQUESTS BEFORE\tREQUESTS AFTER\tSHARE BEFORE\tSHARE AFTER")
	for _, b := range p.Balance {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", b.Region, b.Shard, ranges(b.Before.KeyRanges), ranges(b.After.KeyRanges),
			b.Before.Rows, b.After.Rows, b.Before.Requests, b.After.Requests, pct(b.Before.Share), pct(b.After.Share))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(p.Notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range p.Notes {
			fmt.Fprintf(w, "  - %s\n", n)
		}
	}
	return nil
}

func ranges(rs []string) string {
	if len(rs) == 0 {
		return "-"
	}
	return strings.Join(rs, " ")
}
