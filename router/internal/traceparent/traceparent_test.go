package traceparent

import "testing"

func TestParse(t *testing.T) {
	const good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	cases := []struct {
		in string
		ok bool
	}{
		{good, true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", true},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", false},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", false},
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false},
		{"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", false},
		{"", false},
		{"00", false},
	}
	for _, c := range cases {
		if _, ok := Parse(c.in); ok != c.ok {
			t.Errorf("Parse(%q) ok = %v, want %v", c.in, ok, c.ok)
		}
	}
	c, _ := Parse(good)
	if c.String() != good {
		t.Errorf("String() = %q, want %q", c.String(), good)
	}
}

func TestNext(t *testing.T) {
	in := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"
	out, continued := Next(in)
	prev, _ := Parse(in)
	if !continued || out.TraceID != prev.TraceID || out.SpanID == prev.SpanID || out.Flags != FlagSampled {
		t.Errorf("Next(%q) = %s, %v", in, out, continued)
	}
	a, ca := Next("")
	b, _ := Next("")
	if ca || a.TraceID == b.TraceID || a.Flags != FlagSampled {
		t.Errorf("two new traces: %s and %s", a, b)
	}
	if _, ok := Parse(a.String()); !ok {
		t.Errorf("a new trace does not parse: %s", a)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever")
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := Parse(s)
		if !ok {
			return
		}
		again, ok := Parse(c.String())
		if !ok || again != c {
			t.Fatalf("Parse(%q) = %+v does not round-trip (%q)", s, c, c.String())
		}
	})
}

func BenchmarkNext(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		c, _ := Next("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
		_ = c.String()
	}
}
