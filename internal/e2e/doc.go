// Package e2e holds Purser's end-to-end tests: they start real servers
// (in process through internal/app, or the built purser binary), talk to
// them over HTTP on 127.0.0.1 exactly as users and agents do, and check the
// outcomes that matter: bad input changes nothing, budgets hold under
// concurrency and across nodes, secrets stay out of logs, and a crash loses
// no acknowledged decision. The package has no non-test code.
package e2e
