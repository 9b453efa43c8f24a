// Package postgres opens Purser's multi-node store on PostgreSQL through
// pgx. Several purser processes may share one database: agent rows are
// locked with SELECT … FOR UPDATE, the audit chain head with a row lock
// taken only at commit time, and migrations under an advisory lock.
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/purserhq/purser/internal/store/sqlstore"
)

//go:embed migrations/*.up.sql
var migrations embed.FS

// Migrations returns the embedded PostgreSQL migrations.
func Migrations() fs.FS {
	sub, _ := fs.Sub(migrations, "migrations")
	return sub
}

// migrationLockKey is an arbitrary constant naming Purser's advisory lock.
const migrationLockKey = 0x70757273 // "purs"

// Open connects to dsn (a postgres:// URL or key=value string) and
// migrates the schema.
func Open(ctx context.Context, dsn string, log *slog.Logger) (*sqlstore.Store, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	if _, set := cfg.RuntimeParams["plan_cache_mode"]; !set {
		// Plan every execution with its parameters. A generic plan is
		// made once per connection and kept; one made while a table was
		// still small (a new install, a test) keeps scanning it whole as
		// it grows: the batch's idempotency look-up went from 0.3 ms to
		// 90 ms that way within a minute of load, and throughput fell
		// by half. Planning these short statements costs less than that
		// risk (docs/performance.md).
		cfg.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(24)
	db.SetMaxIdleConns(24)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	s, err := sqlstore.New(ctx, sqlstore.Options{
		Writer: db, Reader: db, Logger: log, Migrations: Migrations(),
		Dialect: sqlstore.Dialect{
			Name: "postgres", Numbered: true,
			LockRows: " FOR UPDATE", LockAgentAndKey: " FOR UPDATE OF a, k",
			NowMicros:  "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint",
			Committers: 2, MaxBatch: 64, Retryable: retryable, Pipeline: pipeline,
			LockMigrations: func(ctx context.Context, c *sql.Conn) (func(), error) {
				if _, err := c.ExecContext(ctx, "SELECT pg_advisory_lock($1)", migrationLockKey); err != nil {
					return nil, err
				}
				return func() { c.ExecContext(context.Background(), "SELECT pg_advisory_unlock($1)", migrationLockKey) }, nil //nolint:errcheck
			},
		},
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// pipeline sends a group transaction's statements in one round trip (a
// pgx batch on the transaction's connection): PostgreSQL still runs them
// one after another, each starting when the one before has finished, but
// the batch pays one network and scheduling delay instead of one per
// statement. On this two-core machine that delay, not the statements'
// work, was most of a batch's time: 7.5 ms for ~12 round trips, whether
// the batch had 17 callers or 30.
func pipeline(ctx context.Context, driverConn any, qs []sqlstore.Query) error {
	dc, ok := driverConn.(*stdlib.Conn)
	if !ok {
		return fmt.Errorf("postgres: pipeline on a %T", driverConn)
	}
	b := &pgx.Batch{}
	for _, q := range qs {
		b.Queue(q.SQL, q.Args...)
	}
	br := dc.Conn().SendBatch(ctx, b)
	for _, q := range qs {
		rows, err := br.Query()
		if err != nil {
			br.Close()
			return err
		}
		for rows.Next() {
			if q.Row == nil {
				continue
			}
			if err := q.Row(rows); err != nil {
				rows.Close()
				br.Close()
				return err
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			br.Close()
			return err
		}
	}
	return br.Close()
}

// retryable: serialization failure and deadlock abort a transaction that
// would succeed if run again. So does a clash on an idempotency key: the
// lock query's look-up of the key runs on the snapshot taken before the
// agent's row lock was granted (READ COMMITTED), so a request that waited
// for a concurrent first use of the same key misses that spend; run again,
// it finds it and answers with the replay.
func retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "40001" || pe.Code == "40P01" || (pe.Code == "23505" && pe.ConstraintName == "spends_idempotency")
	}
	return false
}
