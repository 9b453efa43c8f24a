// Package spend is Purser's one spend pipeline and the service around it:
// agents (active, frozen, revoked), their keys and wallets, versioned
// mandates, and spends that walk
//
//	authenticate → evaluate mandate → reserve hold (+ audit, one transaction)
//	→ (approval) → execute on the rail → capture or release → reconcile
//
// Every state change of a spend and every owner action appends exactly one
// audit event inside the same store transaction as the change itself, so
// the ledger and the audit chain can never disagree.
//
// The package declares what it needs from the outside world (Store, Tx,
// Rail, Clock, WalletProvider) and imports no transport or storage
// package; internal/deps_test.go enforces that.
package spend
