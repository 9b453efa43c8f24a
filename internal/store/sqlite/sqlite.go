// Package sqlite opens Purser's embedded store: a SQLite file (pure Go,
// modernc.org/sqlite) in WAL mode, one writer connection and a small pool
// of readers. Every commit is fsynced before its callers are answered (by
// the store's syncer, off the writer's path).
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
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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

// Page cache sizes (negative: KiB). The writer's is small because SQLite
// walks a connection's whole page cache at the end of any write
// transaction whose b-tree balancing swapped two pages: the swap parks a
// page under a temporary number past the end of the file (the lock-byte
// page, 262145 for 4 KiB pages), and the commit then truncates the cache
// back to the file's size, which scans every hash slot and page. Balancing
// happens in nearly every batch, and with a 64 MiB cache the scan was 12 %
// of the writer's time (6.6 % of the server's CPU under load); with 8 MiB,
// still several times the pages a batch touches, it is under 1 %. Readers
// keep a larger cache for the portal's and exports' scans.
const (
	writerCache = "&_pragma=cache_size(-8192)"
	readerCache = "&_pragma=cache_size(-65536)"
)

// Open opens (creating if needed) the database file at path.
func Open(ctx context.Context, path string, log *slog.Logger) (*sqlstore.Store, error) {
	base := "file:" + url.PathEscape(path) + "?_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=temp_store(MEMORY)"
	// The writer neither checkpoints the WAL itself on commit
	// (wal_autocheckpoint 0) nor waits for the disk (synchronous NORMAL,
	// which in WAL mode never risks corruption): the store's syncer
	// fsyncs the WAL after every commit, while the writer runs the next
	// batch, and answers the batch's callers only then (walSyncer). So
	// an answered commit is durable, as with synchronous FULL.
	w, err := sql.Open("sqlite", base+writerCache+"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=wal_autocheckpoint(0)&_pragma=journal_size_limit(67108864)&_txlock=immediate")
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
	r, err := sql.Open("sqlite", base+readerCache+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(4)
	ck, err := sql.Open("sqlite", base+writerCache+"&_pragma=synchronous(FULL)")
	if err != nil {
		w.Close()
		r.Close()
		return nil, err
	}
	ck.SetMaxOpenConns(1)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	wl := &walSyncer{path: path + "-wal", dir: filepath.Dir(path)}
	c := &checkpointer{w: w, ck: ck, log: log}
	s, err := sqlstore.New(ctx, sqlstore.Options{
		Writer: w, Reader: r, Logger: log, Migrations: Migrations(),
		Dialect:        sqlstore.Dialect{Name: "sqlite", NowMicros: "SELECT CAST(unixepoch('subsec') * 1000000 AS INTEGER)", Committers: 1, MaxBatch: 128, Linger: 300 * time.Microsecond, Retryable: retryable, CacheStatements: true},
		Maintain:       c.loop,
		SyncCommit:     wl.sync,
		BetweenBatches: c.checkpointIfLarge,
		OnClose:        func() error { return errors.Join(ck.Close(), wl.close()) },
	})
	if err != nil {
		w.Close()
		r.Close()
		ck.Close()
		wl.close()
		return nil, err
	}
	return s, nil
}

// walSyncer fsyncs the WAL file through its own descriptor: on Linux an
// fsync flushes the file (the inode), whichever descriptor wrote it. The
// file is reopened if it was ever replaced (SQLite deletes the WAL only
// when the last connection closes, which the writer pool never lets
// happen while the store is open).
type walSyncer struct {
	path, dir string
	mu        sync.Mutex
	f         *os.File
}

func (w *walSyncer) sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f != nil {
		fi, err1 := w.f.Stat()
		pi, err2 := os.Stat(w.path)
		if err1 != nil || err2 != nil || !os.SameFile(fi, pi) {
			w.f.Close()
			w.f = nil
		}
	}
	if w.f == nil {
		f, err := os.Open(w.path)
		if err != nil {
			return fmt.Errorf("sqlite: open WAL to sync it: %w", err)
		}
		// The WAL's directory entry must be durable too.
		if d, err := os.Open(w.dir); err == nil {
			err = d.Sync()
			d.Close()
			if err != nil {
				f.Close()
				return fmt.Errorf("sqlite: sync data directory: %w", err)
			}
		}
		w.f = f
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("sqlite: sync WAL: %w", err)
	}
	return nil
}

func (w *walSyncer) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	return w.f.Close()
}

// restartPages is the WAL size (in pages) at which the writer checkpoints
// the WAL itself. Below it, a background PASSIVE checkpoint copies frames
// into the database file without blocking anyone; but while the writer
// keeps appending, such a checkpoint never catches up with the end of the
// WAL, and only a checkpoint that has copied every frame lets the WAL
// start over, so without the writer's own checkpoint now and then the WAL
// grows without bound (1.8 GB in 30 s of load, measured).
const restartPages = 4096 // 16 MiB of 4 KiB pages

// checkpointer copies the WAL into the database in the background and,
// once the WAL is large, has the writer finish the copy between batches.
type checkpointer struct {
	w, ck    *sql.DB
	log      *slog.Logger
	mu       sync.Mutex   // one checkpoint at a time: a second would wait in SQLite's busy handler
	logPages atomic.Int64 // WAL size at the last background checkpoint
}

// loop runs a PASSIVE checkpoint every 250 ms (it never blocks the writer
// or readers).
func (c *checkpointer) loop(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	var warned time.Time
	for {
		select {
		case <-ctx.Done():
			// A last full checkpoint so a clean shutdown leaves a small WAL.
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c.mu.Lock()
			c.ck.ExecContext(cctx, "PRAGMA wal_checkpoint(TRUNCATE)") //nolint:errcheck // best effort
			c.mu.Unlock()
			cancel()
			return
		case <-t.C:
		}
		var busy, logPages, done int64
		c.mu.Lock()
		err := c.ck.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logPages, &done)
		c.mu.Unlock()
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("sqlite: wal checkpoint failed", "err", err)
			}
			continue
		}
		c.logPages.Store(logPages)
		if logPages >= warnPages && time.Since(warned) >= time.Minute {
			warned = time.Now()
			c.log.Warn("sqlite: the WAL keeps growing: long-running reads (an audit export, say) keep it from starting over; it shrinks once they end",
				"wal_mib", logPages*4096>>20)
		}
	}
}

// warnPages: a WAL this large (1 GiB of 4 KiB pages) means checkpoints
// have not been able to finish for a while, which only long reads cause.
const warnPages = 1 << 18

// checkpointIfLarge runs on the committer between batches. Being the writer,
// its PASSIVE checkpoint has nobody appending behind it, so it copies the
// WAL to its end (what the background checkpoints left: the frames of the
// last few hundred milliseconds) unless a reader still reads an older
// snapshot; the next write transaction then finds the WAL fully copied and
// SQLite starts it over from the beginning. It never waits: a RESTART
// checkpoint would also wait, in the busy handler, for readers to leave
// the WAL, which stalled the writer for 10-35 ms several times a second
// under load (and a TRUNCATE from another connection, before that, for
// 250-500 ms). If a reader kept the copy short, the next background
// checkpoint re-arms it.
func (c *checkpointer) checkpointIfLarge(ctx context.Context) {
	if c.logPages.Load() < restartPages || !c.mu.TryLock() {
		return
	}
	defer c.mu.Unlock()
	c.logPages.Store(0)
	if _, err := c.w.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)"); err != nil {
		c.log.Warn("sqlite: wal checkpoint failed", "err", err)
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
