// Package audit writes the append-only trail of security events (registrations, logins, failed logins,
// refresh-token reuse, API-key changes, OAuth logins) into core.audit_log on the shard of the user the
// event is about. The table rejects UPDATE, so a row once written stays as written; this package only
// inserts and reads.
//
// Events never carry secrets: no password, token, key or key hash goes into Target or Details. The
// caller decides what is safe; Record cannot tell a secret from an ordinary string.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

// Actions recorded by the accounts feature. Dotted lower case, as the table's CHECK requires.
const (
	ActionRegister          = "auth.register"
	ActionLogin             = "auth.login"
	ActionLoginFailed       = "auth.login_failed"
	ActionRefreshTokenReuse = "auth.refresh_token_reuse"
	ActionLogout            = "auth.logout"
	ActionLogoutAll         = "auth.logout_all"
	ActionAPIKeyCreated     = "auth.api_key_created"
	ActionAPIKeyRevoked     = "auth.api_key_revoked"
	ActionOAuthLogin        = "auth.oauth_login"
	// Email verification and provider links (docs/security.md).
	ActionVerificationSent = "auth.email_verification_sent"
	ActionEmailVerified    = "auth.email_verified"
	ActionOAuthLinked      = "auth.oauth_linked"
)

// Column limits of core.audit_log.
const (
	MaxTarget    = 256
	MaxUserAgent = 512
)

// ErrInvalidEvent is wrapped by Record when an event breaks the table's rules; it is a caller bug.
var ErrInvalidEvent = errors.New("audit: invalid event")

var actionRE = regexp.MustCompile(`^[a-z][a-z0-9_.]{0,63}$`)

// Event is one security event about the user whose keyspace ID is KSID.
type Event struct {
	// ID, if zero, is made by Record with a fresh generator. Callers that have the node's generator
	// should pass one: IDs of one generator are strictly ordered.
	ID shardkey.ID
	// KSID is the subject user's keyspace ID: the row goes to that user's shard.
	KSID shardkey.KeyspaceID
	// ActorID is who acted (zero: the system, or nobody known, as for a failed login).
	ActorID shardkey.ID
	Action  string
	// Target names what was acted on (an API key ID, a token family ID); at most MaxTarget characters.
	Target string
	// IP is the client address (the zero Addr is stored as NULL).
	IP netip.Addr
	// UserAgent is cut to MaxUserAgent characters: it is client input and must not fail the write.
	UserAgent string
	// Details is stored as a JSON object (nil: {}).
	Details map[string]any
	// At is the event time (zero: the database clock).
	At time.Time
}

// Execer is what Record needs: a pool, a connection or a transaction (record inside the transaction
// that makes the change, so the trail and the change commit together).
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Querier is what List needs.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Record appends e to core.audit_log through db, which must be the shard of e.KSID.
func Record(ctx context.Context, db Execer, e Event) error {
	if err := e.check(); err != nil {
		return err
	}
	id := e.ID
	if id.IsZero() {
		now := time.Now
		if !e.At.IsZero() {
			at := e.At
			now = func() time.Time { return at }
		}
		var err error
		if id, err = shardkey.NewGenerator(now, nil).New(shardkey.KindAudit, e.KSID); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
	}
	details := e.Details
	if details == nil {
		details = map[string]any{}
	}
	dj, err := json.Marshal(details)
	if err != nil {
		return fmt.Errorf("%w: details: %w", ErrInvalidEvent, err)
	}
	var actor, ip, at any
	if !e.ActorID.IsZero() {
		actor = e.ActorID.Bytes()
	}
	if e.IP.IsValid() {
		ip = e.IP.Unmap()
	}
	if !e.At.IsZero() {
		at = e.At.UTC()
	}
	_, err = db.Exec(ctx, `
		INSERT INTO core.audit_log (ksid, id, at, actor_id, action, target, ip, user_agent, details)
		VALUES ($1, $2, COALESCE($3::timestamptz, now()), $4, $5, $6, $7, NULLIF($8, ''), $9::jsonb)`,
		e.KSID.Bytes(), id.Bytes(), at, actor, e.Action, e.Target, ip, truncate(e.UserAgent, MaxUserAgent), dj)
	if err != nil {
		return fmt.Errorf("audit: recording %s: %w", e.Action, err)
	}
	return nil
}

func (e Event) check() error {
	switch {
	case !actionRE.MatchString(e.Action):
		return fmt.Errorf("%w: action %q is not dotted lower case", ErrInvalidEvent, e.Action)
	case utf8.RuneCountInString(e.Target) > MaxTarget:
		return fmt.Errorf("%w: target is longer than %d characters", ErrInvalidEvent, MaxTarget)
	case !utf8.ValidString(e.Target):
		return fmt.Errorf("%w: target is not UTF-8", ErrInvalidEvent)
	}
	return nil
}

// truncate cuts s to at most n characters, replacing invalid UTF-8 (PostgreSQL would refuse it).
func truncate(s string, n int) string {
	if !utf8.ValidString(s) {
		s = string([]rune(s)) // invalid bytes become U+FFFD
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}

// Entry is a recorded event.
type Entry struct {
	ID        shardkey.ID
	KSID      shardkey.KeyspaceID
	At        time.Time
	ActorID   shardkey.ID
	Action    string
	Target    string
	IP        netip.Addr
	UserAgent string
	Details   map[string]any
}

// List returns the newest events about ksid (at most limit), newest first. db must be its shard.
func List(ctx context.Context, db Querier, ksid shardkey.KeyspaceID, limit int) ([]Entry, error) {
	rows, err := db.Query(ctx, `
		SELECT id, at, actor_id, action, target, ip, COALESCE(user_agent, ''), details
		FROM core.audit_log WHERE ksid = $1 ORDER BY at DESC, id DESC LIMIT $2`, ksid.Bytes(), limit)
	if err != nil {
		return nil, fmt.Errorf("audit: listing: %w", err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var (
			e             = Entry{KSID: ksid}
			idB, actorB   []byte
			ip            *netip.Prefix
			detailsRaw    []byte
			errID, errAct error
		)
		if err := rows.Scan(&idB, &e.At, &actorB, &e.Action, &e.Target, &ip, &e.UserAgent, &detailsRaw); err != nil {
			return nil, fmt.Errorf("audit: listing: %w", err)
		}
		e.ID, errID = shardkey.IDFromBytes(idB)
		if actorB != nil {
			e.ActorID, errAct = shardkey.IDFromBytes(actorB)
		}
		if err := errors.Join(errID, errAct); err != nil {
			return nil, fmt.Errorf("audit: listing: %w", err)
		}
		if ip != nil {
			e.IP = ip.Addr()
		}
		if err := json.Unmarshal(detailsRaw, &e.Details); err != nil {
			return nil, fmt.Errorf("audit: listing: details: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
