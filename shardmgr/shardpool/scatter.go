package shardpool

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// ScatterOptions bound a fan-out.
type ScatterOptions struct {
	// Concurrency is the most shards queried at once; 0 means 8.
	Concurrency int
	// PerShardTimeout bounds each shard's call; 0 means only the parent context's deadline applies.
	PerShardTimeout time.Duration
}

// ShardValue is one shard's answer.
type ShardValue[T any] struct {
	Shard string
	Value T
}

// ShardError is one shard's failure.
type ShardError struct {
	Shard string
	Err   error
}

func (e ShardError) Error() string { return fmt.Sprintf("shard %s: %v", e.Shard, e.Err) }
func (e ShardError) Unwrap() error { return e.Err }

// Result holds what a fan-out returned: the answers of the shards that succeeded, in the order of the
// targets, and the failures of the others.
type Result[T any] struct {
	Values []ShardValue[T]
	Failed []ShardError
}

// Partial reports whether some shard failed.
func (r Result[T]) Partial() bool { return len(r.Failed) > 0 }

// FailedShards lists the names of the shards that failed.
func (r Result[T]) FailedShards() []string {
	out := make([]string, len(r.Failed))
	for i, f := range r.Failed {
		out[i] = f.Shard
	}
	return out
}

// Scatter calls fn for every target with at most opts.Concurrency calls at once, each under its own
// deadline. A shard that fails, times out or panics is reported in Result.Failed; the others' answers are
// kept. Scatter returns when every call has returned or been abandoned by the parent context.
func Scatter[T any](ctx context.Context, targets []Target, opts ScatterOptions, fn func(context.Context, Target) (T, error)) Result[T] {
	limit := opts.Concurrency
	if limit <= 0 {
		limit = 8
	}
	type outcome struct {
		v   T
		err error
	}
	outs := make([]outcome, len(targets))
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i, t := range targets {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			outs[i].err = ctx.Err()
			continue
		}
		wg.Add(1)
		go func(i int, t Target) {
			defer wg.Done()
			defer func() { <-sem }()
			defer func() {
				if p := recover(); p != nil {
					outs[i].err = fmt.Errorf("panic: %v", p)
				}
			}()
			cctx, cancel := ctx, context.CancelFunc(func() {})
			if opts.PerShardTimeout > 0 {
				cctx, cancel = context.WithTimeout(ctx, opts.PerShardTimeout)
			}
			defer cancel()
			v, err := fn(cctx, t)
			outs[i] = outcome{v: v, err: err}
		}(i, t)
	}
	wg.Wait()
	var res Result[T]
	for i, o := range outs {
		if o.err != nil {
			res.Failed = append(res.Failed, ShardError{Shard: targets[i].Shard, Err: o.err})
			continue
		}
		res.Values = append(res.Values, ShardValue[T]{Shard: targets[i].Shard, Value: o.v})
	}
	return res
}
