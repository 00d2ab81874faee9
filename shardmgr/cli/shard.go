package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/8thdegree/meridian/shardmgr/migrate"
	"github.com/8thdegree/meridian/shardmgr/shardlock"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topoedit"
	"github.com/8thdegree/meridian/shardmgr/topology"
	"github.com/8thdegree/meridian/shardmgr/topostore"
)

// withShardLock runs fn holding the shard lock (shardmgr/shardlock, the one lock migrate, moves,
// splits, shard add/remove and rebalance take; --lock-key), with a context that ends if the lock is
// lost. fn gets the lock too, for the moves of a rebalance, which run under it.
func withShardLock(ctx context.Context, o *options, holder string, fn func(context.Context, *topostore.Store, *shardlock.Lock) error) error {
	c, err := o.consulClient()
	if err != nil {
		return err
	}
	l, err := shardlock.Acquire(ctx, c, o.lockKey, holder)
	if err != nil {
		return fmt.Errorf("taking the shard lock (nothing changed): %w", err)
	}
	lctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-l.Lost():
			cancel(shardlock.ErrLost)
		case <-lctx.Done():
		}
	}()
	ferr := fn(lctx, topostore.NewStore(c, o.key), l)
	if errors.Is(context.Cause(lctx), shardlock.ErrLost) && ferr != nil {
		ferr = fmt.Errorf("%w (the shard lock was lost)", ferr)
	}
	if rerr := l.Release(context.WithoutCancel(ctx)); rerr != nil && ferr == nil {
		ferr = rerr
	}
	return ferr
}

func newShardCmd(o *options, env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "shard",
		Short: "Add an empty database as a shard, or remove a shard that owns no keyrange",
	}
	cmd.AddCommand(newShardAddCmd(o, env), newShardRemoveCmd(o, env))
	return cmd
}

func newShardAddCmd(o *options, env Env) *cobra.Command {
	var region, dsn, pwEnv, pwFile string
	var maxConns int32
	cmd := &cobra.Command{
		Use:   "add <name> --region <r> --dsn <url>",
		Short: "Register a new, empty database as a shard of a region (migrated first, owning no keyrange)",
		Long: `Register a new, empty database as a shard: the database is checked (reachable, no rows in the
sharded schemas, not already a shard), every migration is applied to it, and then it is added to the
topology with check-and-set, owning no keyrange. Give it data with 'shardmgr move' or 'shardmgr rebalance'.

The DSN must not carry a password: secrets never enter the topology. Name the environment variable or
file that holds it with --password-env or --password-file; the topology records that name.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if region == "" || dsn == "" {
				return usagef("--region and --dsn are required")
			}
			if pwEnv != "" && pwFile != "" {
				return usagef("--password-env and --password-file are exclusive")
			}
			conn, err := parseShardDSN(dsn)
			if err != nil {
				return err
			}
			conn.PasswordEnv, conn.PasswordFile, conn.MaxConns = pwEnv, pwFile, maxConns
			shard := topology.Shard{Name: name, Region: region, Conn: conn}
			ctx, cancel := withTimeout(cmd, o)
			defer cancel()
			t, _, err := o.load(ctx)
			if err != nil {
				return err
			}
			if err := topoedit.AddShard(t.Clone(), shard); err != nil {
				if errors.Is(err, topoedit.ErrUnknownRegion) {
					return usagef("--region: %v", err)
				}
				return fmt.Errorf("shard %s: %w (nothing changed)", name, err)
			}
			pw, err := shardpool.PasswordFromEnvOrFile(conn)
			if err != nil {
				return fmt.Errorf("shard %s: %w (nothing changed)", name, err)
			}
			where := fmt.Sprintf("%s:%d/%s", conn.Host, conn.Port, conn.Database)
			var res migrate.ShardResult
			var version uint64
			err = withShardLock(ctx, o, "shard add "+name, func(ctx context.Context, st *topostore.Store, _ *shardlock.Lock) error {
				if err := checkNewShardDB(ctx, shardpool.ConnString(conn, pw), where); err != nil {
					return err
				}
				results, err := migrate.Up(ctx, []migrate.Target{{Shard: name, DSN: shardpool.ConnString(conn, pw)}}, migrate.Options{Logger: o.logger(env)})
				if len(results) == 1 {
					res = results[0]
				}
				if err != nil {
					return fmt.Errorf("migrating %s: %w; the topology is unchanged, the database may hold part of the schema (fix the cause and run shard add again: migrations are idempotent)", where, err)
				}
				var next *topology.Topology
				_, err = st.Modify(ctx, func(t *topology.Topology) error {
					next = t
					return topoedit.AddShard(t, shard)
				})
				if err != nil {
					return fmt.Errorf("adding %s to the topology: %w; the topology is unchanged, the database %s is migrated and empty (run shard add again)", name, err, where)
				}
				version = next.Version
				return nil
			})
			if err != nil {
				return err
			}
			if o.output == "json" {
				applied := res.Applied
				if applied == nil {
					applied = []int64{}
				}
				return writeJSON(env.Stdout, map[string]any{"shard": name, "region": region, "database": where, "migrations_applied": applied, "schema_version": res.Current, "version": version, "keyranges": []string{}})
			}
			fmt.Fprintf(env.Stdout, "shard %s added to region %s (%s): %d migrations applied (schema version %d), owning no keyrange; topology version %d\n", name, region, where, len(res.Applied), res.Current, version)
			fmt.Fprintf(env.Stdout, "give it data with 'shardmgr move <keyrange> --to %s' or 'shardmgr rebalance --region %s --apply'\n", name, region)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&region, "region", "", "region of the shard (its PostgreSQL must be in that region)")
	f.StringVar(&dsn, "dsn", "", "postgres://user@host:port/database?sslmode=... of the new, empty database (no password)")
	f.StringVar(&pwEnv, "password-env", "", "environment variable that holds the database password (recorded in the topology by name)")
	f.StringVar(&pwFile, "password-file", "", "file that holds the database password (recorded in the topology by path)")
	f.Int32Var(&maxConns, "max-conns", 0, "pool size per process for this shard (0: the processes' default)")
	return cmd
}

// parseShardDSN turns a postgres:// URL into a shard's connection settings. Everything the topology
// cannot record is refused rather than dropped, and a password above all.
func parseShardDSN(dsn string) (topology.Conn, error) {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return topology.Conn{}, usagef("--dsn must be a URL like postgres://user@host:5432/database?sslmode=disable")
	}
	if _, has := u.User.Password(); has || u.Query().Has("password") {
		return topology.Conn{}, usagef("--dsn carries a password: secrets never enter the topology; remove it and give --password-env or --password-file")
	}
	for k := range u.Query() {
		if k != "sslmode" {
			return topology.Conn{}, usagef("--dsn parameter %q cannot be recorded in the topology (only sslmode can); remove it", k)
		}
	}
	if strings.Contains(u.Host, ",") {
		return topology.Conn{}, usagef("--dsn names several hosts; a shard is one database on one host")
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return topology.Conn{}, usagef("--dsn: %v", err)
	}
	c := topology.Conn{Host: u.Hostname(), Port: int(cfg.Port), Database: strings.TrimPrefix(u.Path, "/"), User: u.User.Username(), SSLMode: u.Query().Get("sslmode")}
	switch {
	case c.Host == "":
		return topology.Conn{}, usagef("--dsn has no host")
	case c.Database == "" || strings.Contains(c.Database, "/"):
		return topology.Conn{}, usagef("--dsn has no database name (postgres://user@host:port/DATABASE)")
	case c.User == "":
		return topology.Conn{}, usagef("--dsn has no user (postgres://USER@host:port/database)")
	}
	return c, nil
}

// checkNewShardDB connects to the database and refuses one with rows in a sharded schema: a new shard
// must hold nothing, or its rows would surface under keyranges it is later given.
func checkNewShardDB(ctx context.Context, dsn, where string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w (nothing changed)", where, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = ANY($1) AND c.relkind = 'r' ORDER BY 1, 2`, dataSchemas)
	if err != nil {
		return fmt.Errorf("reading %s: %w (nothing changed)", where, err)
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (pgx.Identifier, error) {
		var s, n string
		err := r.Scan(&s, &n)
		return pgx.Identifier{s, n}, err
	})
	if err != nil {
		return fmt.Errorf("reading %s: %w (nothing changed)", where, err)
	}
	var full []string
	for _, tb := range tables {
		var has bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+tb.Sanitize()+")").Scan(&has); err != nil {
			return fmt.Errorf("reading %s: %w (nothing changed)", where, err)
		}
		if has {
			full = append(full, strings.Join(tb, "."))
		}
	}
	if len(full) > 0 {
		return fmt.Errorf("database %s is not empty: %s hold rows; a new shard must be empty (nothing changed)", where, strings.Join(full, ", "))
	}
	return nil
}

func newShardRemoveCmd(o *options, env Env) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "remove <name> [--yes]",
		Short: "Remove a shard that owns no keyrange from the topology (its database is not dropped)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			ctx, cancel := withTimeout(cmd, o)
			defer cancel()
			t, _, err := o.load(ctx)
			if err != nil {
				return err
			}
			s, ok := t.Shard(name)
			if !ok {
				return usagef("no shard %q in topology version %d (shards: %s)", name, t.Version, shardNames(t))
			}
			if err := topoedit.RemoveShard(t.Clone(), name); err != nil {
				return fmt.Errorf("%w (nothing changed)", err)
			}
			where := fmt.Sprintf("%s:%d/%s", s.Conn.Host, s.Conn.Port, s.Conn.Database)
			if !yes {
				return usagef("remove takes shard %s (%s) out of the topology; pass --yes to do it (the database is not dropped)", name, where)
			}
			var version uint64
			err = withShardLock(ctx, o, "shard remove "+name, func(ctx context.Context, st *topostore.Store, _ *shardlock.Lock) error {
				c, err := o.consulClient()
				if err != nil {
					return err
				}
				if moves, err := movesTargeting(ctx, c, o, name); err != nil {
					return err
				} else if len(moves) > 0 {
					return fmt.Errorf("shard %s is the target of an unfinished move (%s): resume or abort it first (nothing changed)", name, strings.Join(moves, ", "))
				}
				var next *topology.Topology
				if _, err := st.Modify(ctx, func(t *topology.Topology) error {
					next = t
					return topoedit.RemoveShard(t, name)
				}); err != nil {
					return fmt.Errorf("removing %s: %w (nothing changed)", name, err)
				}
				version = next.Version
				return nil
			})
			if err != nil {
				return err
			}
			if o.output == "json" {
				return writeJSON(env.Stdout, map[string]any{"shard": name, "removed": true, "database": where, "database_dropped": false, "version": version})
			}
			fmt.Fprintf(env.Stdout, "shard %s removed from the topology (version %d); its database %s was not dropped: drop it yourself once you no longer need it\n", name, version, where)
			return nil
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm the removal")
	return cmd
}

// movesTargeting lists the moves under the moves prefix (--moves-prefix) that have shard as their
// target and are not finished: a move counts until its status is done or aborted (a failed move is
// resumable, and its target may hold copied rows). A record it cannot read counts as unfinished, so it
// errs on the side of refusing.
func movesTargeting(ctx context.Context, c *consul.Client, o *options, shard string) ([]string, error) {
	prefix := o.movesPrefix
	pairs, _, err := c.KV().List(prefix, (&consul.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("listing the moves under %s: %w (nothing changed)", prefix, err)
	}
	var out []string
	for _, p := range pairs {
		var rec struct {
			Target string `json:"target"`
			Status string `json:"status"`
		}
		if err := json.Unmarshal(p.Value, &rec); err != nil {
			out = append(out, strings.TrimPrefix(p.Key, prefix)+" (unreadable record)")
			continue
		}
		if rec.Target == shard && rec.Status != "done" && rec.Status != "aborted" {
			out = append(out, strings.TrimPrefix(p.Key, prefix))
		}
	}
	return out, nil
}

// shardTimeout is the connect timeout for the shard pools the planner's commands open.
const shardTimeout = 5 * time.Second
