package internal_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyDirection keeps the domain core a leaf: the packages that
// hold the rules import neither transports nor storage, and no transport
// reaches into a store or a rail.
func TestDependencyDirection(t *testing.T) {
	t.Parallel()
	const mod = "github.com/purserhq/purser/internal/"
	forbidden := map[string][]string{
		"money":   {"net/http", "database/sql", mod},
		"audit":   {"net/http", "database/sql", mod},
		"mandate": {"net/http", "database/sql", mod + "spend", mod + "store", mod + "httpapi", mod + "audit"},
		// keystore and agentauth use go-ethereum's crypto, whose common
		// package pulls in database/sql/driver; what matters is that they
		// reach no project package and no transport.
		"keystore":  {"net/http", mod},
		"agentauth": {mod},
		// The co-signing core is pure cryptography behind Purser's own
		// interface: no project package, no transport (the caller carries
		// its messages).
		"cosign":  {"net/http", mod},
		"spend":   {"net/http", "database/sql", mod + "store", mod + "httpapi", mod + "app", mod + "cli", mod + "client", mod + "keystore"},
		"httpapi": {mod + "store", mod + "app", mod + "cli", mod + "keystore"},
		"portal":  {mod + "store", mod + "rails", mod + "app", mod + "cli", mod + "keystore", mod + "httpapi"},
		// Rails and the facilitator move money; they reach no transport,
		// store or composition root.
		"rails":       {mod + "store", mod + "httpapi", mod + "app", mod + "cli", mod + "keystore"},
		"facilitator": {mod + "spend", mod + "store", mod + "httpapi", mod + "app", mod + "keystore"},
		// The MCP server is a client of the API, through the public SDK,
		// like any agent program: no pipeline, store, rail or key store.
		"mcpserver": {mod + "spend", mod + "store", mod + "rails", mod + "httpapi", mod + "app", mod + "cli", mod + "keystore", mod + "evm"},
		// The owner's sign-in is a transport of the service: no store, no
		// keys, no other transport.
		"owners": {mod + "store", mod + "httpapi", mod + "app", mod + "cli", mod + "keystore", mod + "rails"},
	}
	for pkg, bad := range forbidden {
		out, err := exec.Command("go", "list", "-deps", "./"+pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps ./%s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if dep == mod+pkg {
				continue
			}
			for _, b := range bad {
				if dep == b || (strings.HasSuffix(b, "/") && strings.HasPrefix(dep, b)) || strings.HasPrefix(dep, b+"/") {
					if pkg == "mandate" && dep == mod+"money" {
						continue
					}
					t.Errorf("internal/%s depends on %s", pkg, dep)
				}
			}
		}
	}
	// The public SDK is the agent's and the owner's side: it reaches no
	// server package (it shares the wire types of package api instead).
	// api declares types only and imports nothing of Purser.
	for pkg, bad := range map[string][]string{
		"../sdk": {mod + "store", mod + "spend", mod + "app", mod + "httpapi", mod + "rails", mod + "keystore", mod + "cli", mod + "mandate", mod + "audit", mod + "apiproxy"},
		"../api": {mod, "github.com/purserhq/purser/x402", "github.com/purserhq/purser/sdk"},
	} {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, b := range bad {
				if dep == b || (strings.HasSuffix(b, "/") && strings.HasPrefix(dep, b)) || strings.HasPrefix(dep, b+"/") {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
	// The public x402 packages are for sellers' programs: no internal package.
	for _, pkg := range []string{"../x402", "../x402/middleware"} {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, mod) {
				t.Errorf("%s depends on %s", pkg, dep)
			}
		}
	}
	// cli stays a thin layer: it parses flags, calls app (which wires
	// servers, chains, stores, relayers and middlewares, for demo and
	// facilitator as for serve), talks to Purser through the sdk, and
	// prints. Direct imports only: through app it reaches everything.
	// Its tests may still start real components (a dev chain) as fixtures.
	out, err := exec.Command("go", "list", "-f", `{{join .Imports " "}}`, "./cli").Output()
	if err != nil {
		t.Fatalf("go list ./cli: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, b := range []string{mod + "facilitator", mod + "evm", mod + "devchain", mod + "store", mod + "rails",
			mod + "spend", mod + "httpapi", mod + "keystore", mod + "metrics", mod + "apiproxy", "github.com/purserhq/purser/x402"} {
			if dep == b || strings.HasPrefix(dep, b+"/") {
				t.Errorf("internal/cli imports %s; wire it in internal/app", dep)
			}
		}
	}
	// Only cli may import app, and tests that need a whole server in
	// process: the end-to-end tests, and the public SDK's external tests
	// and examples (package sdk_test: a test package, never part of what
	// a program importing sdk builds), and the MCP server's external
	// tests (package mcpserver_test: MCP clients against a real Purser on
	// the dev chain). Test variants are listed too (-test), named
	// "path [path.test]".
	allowed := map[string]bool{mod + "cli": true, mod + "e2e": true, mod + "e2e.test": true, mod + "e2e_test": true,
		"github.com/purserhq/purser/sdk_test": true, mod + "mcpserver_test": true}
	out, err = exec.Command("go", "list", "-test", "-f", `{{.ImportPath}}|{{join .Imports " "}}`, "../...").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, imports, _ := strings.Cut(line, "|")
		path, _, _ = strings.Cut(path, " ")
		for _, imp := range strings.Fields(imports) {
			if imp == mod+"app" && !allowed[path] && path != mod+"app.test" { // app.test: app's own test binary
				t.Errorf("%s imports internal/app; only internal/cli may", path)
			}
		}
	}
}

// TestPackageDocs: every package says what it is for, once.
func TestPackageDocs(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}|{{.Doc}}`, "../...").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, doc, _ := strings.Cut(line, "|")
		if strings.HasSuffix(path, "/internal") {
			continue
		}
		if strings.TrimSpace(doc) == "" {
			t.Errorf("package %s has no package doc comment", path)
		}
	}
}
