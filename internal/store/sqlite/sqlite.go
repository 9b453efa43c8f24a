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
	base := "file:" + url.PathEscape(path) + "?_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)"
	w, err := sql.Open("sqlite", base+"&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
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
	s, err := sqlstore.New(ctx, sqlstore.Options{
		Writer: w, Reader: r, Logger: log, Migrations: Migrations(),
		Dialect: sqlstore.Dialect{Name: "sqlite", Committers: 1, MaxBatch: 128, Retryable: retryable},
	})
	if err != nil {
		w.Close()
		r.Close()
		return nil, err
	}
	return s, nil
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
