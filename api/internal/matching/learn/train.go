package learn

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
)

// Errors of Train.
var (
	// ErrFeatures: examples (or Init) disagree on the number of features, or a feature is not finite.
	ErrFeatures = errors.New("learn: inconsistent features")
	// ErrNoPairs: no list has two items with different labels, so there is nothing to learn from.
	ErrNoPairs = errors.New("learn: no preference pairs")
)

// Optimizer is the update rule of Train.
type Optimizer int

// The optimizers.
const (
	Adam Optimizer = iota // Adam (Kingma and Ba 2015), with the usual β1 0.9, β2 0.999, ε 1e-8
	GD                    // plain gradient descent
)

func (o Optimizer) String() string {
	switch o {
	case Adam:
		return "adam"
	case GD:
		return "gd"
	}
	return fmt.Sprintf("Optimizer(%d)", int(o))
}

// TrainOptions configure Train. DefaultTrainOptions gives the values the engine trains with.
type TrainOptions struct {
	Epochs       int       // passes over all pairs
	LearningRate float64   // step size
	L2           float64   // weight of ½‖w‖² in the loss
	Clip         float64   // upper bound of a pair's inverse-propensity weight (≥ 1; 1 turns the correction off)
	Optimizer    Optimizer // Adam or GD
	BatchSize    int       // pairs per step; 0 = all pairs in one step (full batch)
	Seed         int64     // pair sampling and mini-batch order
	// MaxPairsPerList bounds the pairs taken from one list (0 = all), sampled with Seed, so a long list
	// with many outcomes cannot outweigh many short ones.
	MaxPairsPerList int
	Init            []float64 // starting weights (e.g. the serving model's); nil = zeros
	// NonNegative projects the weights onto w ≥ 0 after every step: a signal may be ignored but never
	// count against an item, which keeps each signal's contribution to a score readable as a reason.
	NonNegative bool
	// Normalize scales the final weights so their absolute values sum to 1, the scale of the hand-set
	// weights. The ranking a linear scorer makes does not depend on the scale.
	Normalize bool
}

// DefaultTrainOptions are the options the engine trains with.
func DefaultTrainOptions() TrainOptions {
	return TrainOptions{
		Epochs:       300,
		LearningRate: 0.05,
		L2:           1e-3,
		Clip:         10,
		Optimizer:    Adam,
		NonNegative:  true,
		Normalize:    true,
	}
}

// Validate reports the first option that is out of range, by name.
func (o TrainOptions) Validate() error {
	switch {
	case o.Epochs < 1:
		return fmt.Errorf("learn: Epochs must be at least 1, got %d", o.Epochs)
	case !(o.LearningRate > 0) || math.IsInf(o.LearningRate, 0):
		return fmt.Errorf("learn: LearningRate must be a positive number, got %v", o.LearningRate)
	case !(o.L2 >= 0) || math.IsInf(o.L2, 0):
		return fmt.Errorf("learn: L2 must be a number ≥ 0, got %v", o.L2)
	case !(o.Clip >= 1) || math.IsInf(o.Clip, 0):
		return fmt.Errorf("learn: Clip must be a number ≥ 1, got %v", o.Clip)
	case o.Optimizer != Adam && o.Optimizer != GD:
		return fmt.Errorf("learn: unknown Optimizer %d", int(o.Optimizer))
	case o.BatchSize < 0:
		return fmt.Errorf("learn: BatchSize must be ≥ 0, got %d", o.BatchSize)
	case o.MaxPairsPerList < 0:
		return fmt.Errorf("learn: MaxPairsPerList must be ≥ 0, got %d", o.MaxPairsPerList)
	}
	for i, w := range o.Init {
		if math.IsNaN(w) || math.IsInf(w, 0) {
			return fmt.Errorf("learn: Init[%d] is not finite", i)
		}
	}
	return nil
}

// TrainStats describe a fit.
type TrainStats struct {
	Lists       int     // lists with at least one pair
	Pairs       int     // preference pairs used
	Steps       int     // optimizer steps taken
	InitialLoss float64 // loss of the starting weights
	FinalLoss   float64 // loss of the returned weights before Normalize
}

// pairs holds the preference pairs as rows of x_preferred − x_other, with their weights.
type pairs struct {
	dim  int
	diff []float64 // len(w) * dim
	w    []float64
}

// Train fits linear scoring weights to examples with the inverse-propensity-weighted pairwise
// logistic loss
//
//	L(w) = Σ_pairs c_p · log(1 + exp(−w·(x_i − x_j))) / Σ_pairs c_p  +  L2/2 · ‖w‖²
//
// over every pair (i, j) of one list with Label_i > Label_j, where c_p = min(1/Propensity_i, Clip).
// It returns the weights in the order of the examples' features.
func Train(examples []Example, opts TrainOptions) ([]float64, TrainStats, error) {
	var st TrainStats
	if err := opts.Validate(); err != nil {
		return nil, st, err
	}
	p, lists, err := buildPairs(examples, opts)
	if err != nil {
		return nil, st, err
	}
	st.Lists, st.Pairs = lists, len(p.w)

	w := make([]float64, p.dim)
	copy(w, opts.Init)
	if opts.NonNegative {
		project(w)
	}
	st.InitialLoss = p.loss(w, opts.L2)

	order := make([]int, len(p.w))
	for i := range order {
		order[i] = i
	}
	batch := opts.BatchSize
	if batch == 0 || batch > len(order) {
		batch = len(order)
	}
	rng := rand.New(rand.NewPCG(uint64(opts.Seed), 0x6c6561726e))
	grad := make([]float64, p.dim)
	m := make([]float64, p.dim) // Adam's first moment
	v := make([]float64, p.dim) // Adam's second moment
	const b1, b2, eps = 0.9, 0.999, 1e-8
	for range opts.Epochs {
		if batch < len(order) {
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		for lo := 0; lo < len(order); lo += batch {
			p.gradient(w, order[lo:min(lo+batch, len(order))], opts.L2, grad)
			st.Steps++
			switch opts.Optimizer {
			case Adam:
				c1 := 1 - math.Pow(b1, float64(st.Steps))
				c2 := 1 - math.Pow(b2, float64(st.Steps))
				for d := range w {
					m[d] = b1*m[d] + (1-b1)*grad[d]
					v[d] = b2*v[d] + (1-b2)*grad[d]*grad[d]
					w[d] -= opts.LearningRate * (m[d] / c1) / (math.Sqrt(v[d]/c2) + eps)
				}
			case GD:
				for d := range w {
					w[d] -= opts.LearningRate * grad[d]
				}
			}
			if opts.NonNegative {
				project(w)
			}
		}
	}
	st.FinalLoss = p.loss(w, opts.L2)
	if opts.Normalize {
		s := 0.0
		for _, x := range w {
			s += math.Abs(x)
		}
		if s > 0 {
			for d := range w {
				w[d] /= s
			}
		}
	}
	return w, st, nil
}

func project(w []float64) {
	for d := range w {
		if w[d] < 0 {
			w[d] = 0
		}
	}
}

func buildPairs(examples []Example, opts TrainOptions) (*pairs, int, error) {
	if len(examples) == 0 {
		return nil, 0, ErrNoPairs
	}
	dim := len(examples[0].Features)
	if dim == 0 {
		return nil, 0, fmt.Errorf("%w: examples have no features", ErrFeatures)
	}
	if opts.Init != nil && len(opts.Init) != dim {
		return nil, 0, fmt.Errorf("%w: Init has %d weights, examples %d features", ErrFeatures, len(opts.Init), dim)
	}
	for _, e := range examples {
		if len(e.Features) != dim {
			return nil, 0, fmt.Errorf("%w: item %q of list %q has %d features, expected %d", ErrFeatures, e.ItemID, e.ListID, len(e.Features), dim)
		}
		for _, f := range e.Features {
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, 0, fmt.Errorf("%w: item %q of list %q has a feature that is not finite", ErrFeatures, e.ItemID, e.ListID)
			}
		}
	}
	rng := rand.New(rand.NewPCG(uint64(opts.Seed), 0x7061697273))
	p := &pairs{dim: dim}
	lists := 0
	type pair struct{ i, j int }
	for _, l := range Group(examples) {
		var ps []pair
		for i := range l {
			for j := range l {
				if l[i].Label > l[j].Label {
					ps = append(ps, pair{i, j})
				}
			}
		}
		if len(ps) == 0 {
			continue
		}
		lists++
		if opts.MaxPairsPerList > 0 && len(ps) > opts.MaxPairsPerList {
			rng.Shuffle(len(ps), func(a, b int) { ps[a], ps[b] = ps[b], ps[a] })
			ps = ps[:opts.MaxPairsPerList]
		}
		for _, q := range ps {
			c := 1.0
			if pr := l[q.i].Propensity; pr > 0 {
				c = math.Min(1/pr, opts.Clip)
			}
			for d := range dim {
				p.diff = append(p.diff, l[q.i].Features[d]-l[q.j].Features[d])
			}
			p.w = append(p.w, c)
		}
	}
	if len(p.w) == 0 {
		return nil, 0, ErrNoPairs
	}
	return p, lists, nil
}

// loss is L(w) over all pairs.
func (p *pairs) loss(w []float64, l2 float64) float64 {
	sum, norm := 0.0, 0.0
	for k, c := range p.w {
		sum += c * softplus(-Dot(p.diff[k*p.dim:(k+1)*p.dim], w))
		norm += c
	}
	return sum/norm + l2/2*Dot(w, w)
}

// gradient writes ∇L(w) over the pairs in idx into g.
func (p *pairs) gradient(w []float64, idx []int, l2 float64, g []float64) {
	for d := range g {
		g[d] = 0
	}
	norm := 0.0
	for _, k := range idx {
		x := p.diff[k*p.dim : (k+1)*p.dim]
		// d/dw log(1+exp(−w·x)) = −x · σ(−w·x)
		s := p.w[k] * sigmoid(-Dot(x, w))
		for d := range g {
			g[d] -= s * x[d]
		}
		norm += p.w[k]
	}
	for d := range g {
		g[d] = g[d]/norm + l2*w[d]
	}
}

func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// softplus is log(1 + exp(x)) without overflow.
func softplus(x float64) float64 {
	if x > 30 {
		return x
	}
	return math.Log1p(math.Exp(x))
}
