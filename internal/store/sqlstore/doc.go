// Package sqlstore implements spend.Store over database/sql for both
// engines Purser supports; internal/store/sqlite and internal/store/postgres
// supply the driver, the dialect and the migrations.
//
// Writes go through a group committer: concurrent InTx calls queue up and
// a committer runs a batch of them in one database transaction, each
// behind its own savepoint, appends their audit events to the chain in one
// step, and commits once. Every caller in the batch is answered only after
// that commit, so an acknowledged decision is always durable, while the
// cost of the durable commit (an fsync) is shared. See docs/architecture.md.
package sqlstore
