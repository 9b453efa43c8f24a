// Package sqlite opens Purser's embedded store: a SQLite file (pure Go,
// modernc.org/sqlite) in WAL mode with durable commits (synchronous=FULL),
// one writer connection and a small pool of readers.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/purserhq/purser/internal/store/sqlstore"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.up.sql
var migrations embed.FS

// Migrations returns the embedded SQLite migrations.
func Migrations() fs.FS {
	sub, _ := fs.Sub(migrations, "migrations")
	return sub
}

// Open opens (creating if needed) the database file at path.
func Open(ctx context.Context, path string, log *slog.Logger) (*sqlstore.Store, error) {
	base := "file:" + url.PathEscape(path) + "?_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=cache_size(-65536)"
	// The writer does not checkpoint the WAL itself (wal_autocheckpoint
	// 0): copying pages back into the database file would sit on the
	// commit path of every caller in the batch. A separate connection
	// checkpoints in the background instead.
	w, err := sql.Open("sqlite", base+"&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=wal_autocheckpoint(0)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1) // one writer: SQLite serialises writers anyway, and this way nothing waits on SQLITE_BUSY
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", base+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(4)
	ck, err := sql.Open("sqlite", base+"&_pragma=synchronous(FULL)")
	if err != nil {
		w.Close()
		r.Close()
		return nil, err
	}
	ck.SetMaxOpenConns(1)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s, err := sqlstore.New(ctx, sqlstore.Options{
		Writer: w, Reader: r, Logger: log, Migrations: Migrations(),
		Dialect:  sqlstore.Dialect{Name: "sqlite", Committers: 1, MaxBatch: 128, Retryable: retryable, CacheStatements: true},
		Maintain: func(ctx context.Context) { checkpointLoop(ctx, ck, log) },
		OnClose:  ck.Close,
	})
	if err != nil {
		w.Close()
		r.Close()
		ck.Close()
		return nil, err
	}
	return s, nil
}

// checkpointLoop copies the WAL into the database file every second
// (PASSIVE: it never blocks the writer or readers), and truncates the WAL
// once it has grown past 64 MiB and a checkpoint completes.
func checkpointLoop(ctx context.Context, ck *sql.DB, log *slog.Logger) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// A last full checkpoint so a clean shutdown leaves a small WAL.
			c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			ck.ExecContext(c, "PRAGMA wal_checkpoint(TRUNCATE)") //nolint:errcheck // best effort
			cancel()
			return
		case <-t.C:
		}
		var busy, logPages, done int64
		if err := ck.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logPages, &done); err != nil {
			if ctx.Err() == nil {
				log.Warn("sqlite: wal checkpoint failed", "err", err)
			}
			continue
		}
		if logPages > 16384 && done == logPages {
			ck.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)") //nolint:errcheck // retried next tick
		}
	}
}

func retryable(err error) bool {
	if err == nil {
		return false
	}
	var c interface{ Code() int }
	if errors.As(err, &c) {
		switch c.Code() & 0xff {
		case 5, 6: // SQLITE_BUSY, SQLITE_LOCKED
			return true
		}
	}
	return strings.Contains(err.Error(), "SQLITE_BUSY")
}
