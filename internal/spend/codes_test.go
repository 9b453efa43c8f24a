package spend_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/purserhq/purser/internal/spend"
)

// repoRoot is the module root, two levels above this package.
const repoRoot = "../.."

// registryFile is where the registry lives; the source scan skips it.
const registryFile = "internal/spend/codes.go"

// TestCodeRegistryMatchesDocs: docs/api.md's error table lists exactly
// the registry's error codes with their HTTP statuses, and its reason
// table exactly the registry's reason codes with their kinds.
func TestCodeRegistryMatchesDocs(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs/api.md"))
	if err != nil {
		t.Fatal(err)
	}
	docErrors := docTable(t, string(doc), "| code | HTTP | meaning |")
	docReasons := docTable(t, string(doc), "| code | kind | meaning |")

	reg := map[string]string{}
	for _, c := range spend.ErrorCodes {
		reg[c.Code] = "—"
		if c.Status != 0 {
			reg[c.Code] = strconv.Itoa(c.Status)
		}
	}
	compare(t, "error code", "HTTP status", reg, docErrors)

	reg = map[string]string{}
	for _, r := range spend.ReasonCodes {
		reg[r.Code] = r.Kind
	}
	compare(t, "reason code", "kind", reg, docReasons)
}

// TestCodeRegistryIsWellFormed: no code twice, every entry has a meaning,
// statuses are error statuses and kinds are the known ones.
func TestCodeRegistryIsWellFormed(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, c := range spend.ErrorCodes {
		if seen[c.Code] {
			t.Errorf("error code %q is registered twice in %s", c.Code, registryFile)
		}
		seen[c.Code] = true
		// 202: approval_required, a proxied call that waits rather than fails.
		if c.Meaning == "" || (c.Status != 0 && c.Status != 202 && (c.Status < 400 || c.Status > 599)) {
			t.Errorf("error code %q: status %d, meaning %q", c.Code, c.Status, c.Meaning)
		}
		if got, ok := spend.HTTPStatus(c.Code); ok != (c.Status != 0) || got != c.Status {
			t.Errorf("HTTPStatus(%q) = %d, %v; registry says %d", c.Code, got, ok, c.Status)
		}
	}
	kinds := []string{spend.ReasonKindDeny, spend.ReasonKindApproval, spend.ReasonKindRelease, spend.ReasonKindPayment, spend.ReasonKindFacilitator, spend.ReasonKindBody}
	seen = map[string]bool{}
	for _, r := range spend.ReasonCodes {
		if seen[r.Code] {
			t.Errorf("reason code %q is registered twice in %s", r.Code, registryFile)
		}
		seen[r.Code] = true
		if r.Meaning == "" || !slices.Contains(kinds, r.Kind) || spend.DescribeReason(r.Code) != r.Meaning {
			t.Errorf("reason code %q: kind %q, meaning %q", r.Code, r.Kind, r.Meaning)
		}
	}
	if _, ok := spend.HTTPStatus("no_such_code"); ok || spend.DescribeReason("no_such_code") != "" {
		t.Error("an unregistered code has a status or a meaning")
	}
}

// TestCodeRegistryMatchesSource scans the Go source (tests and *test
// helper packages aside) for the codes it uses — constants named code*
// and reason* (either case), string literals given to an error constructor (a function
// whose name contains "err"), Code fields and Code() methods, Reasons
// fields, and variables named code or reason — and checks each is
// registered. The other way round, every registered code must still
// appear as a string in the source.
func TestCodeRegistryMatchesSource(t *testing.T) {
	t.Parallel()
	errs, reasons, quoted := scanSource(t)
	registered := func(list []string, code string) bool { return slices.Contains(list, code) }
	var regErrs, regReasons []string
	for _, c := range spend.ErrorCodes {
		regErrs = append(regErrs, c.Code)
	}
	for _, r := range spend.ReasonCodes {
		regReasons = append(regReasons, r.Code)
	}
	for _, code := range sortedKeys(errs) {
		if !registered(regErrs, code) {
			t.Errorf("error code %q (used at %s) is missing from spend.ErrorCodes in %s; add it there and to docs/api.md's error table",
				code, errs[code], registryFile)
		}
	}
	for _, code := range sortedKeys(reasons) {
		if !registered(regReasons, code) {
			t.Errorf("reason code %q (used at %s) is missing from spend.ReasonCodes in %s; add it there and to docs/api.md's reason table",
				code, reasons[code], registryFile)
		}
	}
	for _, code := range append(regErrs, regReasons...) {
		if !quoted[code] {
			t.Errorf("registered code %q appears nowhere in the source outside %s; remove it from the registry and docs/api.md", code, registryFile)
		}
	}
}

// docTable returns code → second column of the markdown table under
// header; a row may list several codes in its first column.
func docTable(t *testing.T, doc, header string) map[string]string {
	t.Helper()
	i := strings.Index(doc, header)
	if i < 0 {
		t.Fatalf("docs/api.md has no table with the header %q", header)
	}
	out := map[string]string{}
	lines := strings.Split(doc[i:], "\n")
	tick := regexp.MustCompile("`([^`]+)`")
	for _, line := range lines[2:] { // header and separator
		if !strings.HasPrefix(line, "|") {
			break
		}
		cols := strings.Split(strings.Trim(line, "| "), " | ")
		if len(cols) < 3 {
			t.Fatalf("docs/api.md: malformed row %q", line)
		}
		for _, m := range tick.FindAllStringSubmatch(cols[0], -1) {
			if _, dup := out[m[1]]; dup {
				t.Errorf("docs/api.md lists %q twice under %q", m[1], header)
			}
			out[m[1]] = strings.TrimSpace(cols[1])
		}
	}
	return out
}

func compare(t *testing.T, what, col string, reg, doc map[string]string) {
	t.Helper()
	for _, code := range sortedKeys(reg) {
		got, ok := doc[code]
		switch {
		case !ok:
			t.Errorf("%s %q (%s %s) is in %s but missing from docs/api.md", what, code, col, reg[code], registryFile)
		case got != reg[code]:
			t.Errorf("%s %q: docs/api.md says %s %s, %s says %s", what, code, col, got, registryFile, reg[code])
		}
	}
	for _, code := range sortedKeys(doc) {
		if _, ok := reg[code]; !ok {
			t.Errorf("%s %q is in docs/api.md but missing from %s", what, code, registryFile)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

var (
	codeLike = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	errFunc  = regexp.MustCompile(`(?i)err`)
	reasonsV = regexp.MustCompile(`(?i)^reasons?$`)
)

// scanSource returns the error codes and reason codes the source uses
// (code → first position) and the set of every string literal.
func scanSource(t *testing.T) (errs, reasons map[string]string, quoted map[string]bool) {
	t.Helper()
	errs, reasons, quoted = map[string]string{}, map[string]string{}, map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repoRoot, path)
		if d.IsDir() {
			name := d.Name()
			if path != repoRoot && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules" || strings.HasSuffix(name, "test")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || filepath.ToSlash(rel) == registryFile {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		pos := func(n ast.Node) string {
			p := fset.Position(n.Pos())
			r, _ := filepath.Rel(repoRoot, p.Filename)
			return fmt.Sprintf("%s:%d", filepath.ToSlash(r), p.Line)
		}
		lit := func(e ast.Expr) (string, bool) {
			b, ok := e.(*ast.BasicLit)
			if !ok || b.Kind != token.STRING {
				return "", false
			}
			s, err := strconv.Unquote(b.Value)
			return s, err == nil && codeLike.MatchString(s)
		}
		add := func(m map[string]string, e ast.Expr) {
			if s, ok := lit(e); ok {
				if _, seen := m[s]; !seen {
					m[s] = pos(e)
				}
			}
		}
		addAll := func(m map[string]string, e ast.Expr) { // a literal or a []string{...}
			if cl, ok := e.(*ast.CompositeLit); ok {
				for _, el := range cl.Elts {
					add(m, el)
				}
				return
			}
			add(m, e)
		}
		name := func(e ast.Expr) string {
			switch e := e.(type) {
			case *ast.Ident:
				return e.Name
			case *ast.SelectorExpr:
				return e.Sel.Name
			}
			return ""
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BasicLit:
				if s, err := strconv.Unquote(n.Value); err == nil && n.Kind == token.STRING {
					quoted[s] = true
				}
			case *ast.CallExpr:
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok {
					if x, ok := sel.X.(*ast.Ident); ok && (x.Name == "fmt" || x.Name == "errors") {
						return true
					}
				}
				if errFunc.MatchString(name(n.Fun)) && len(n.Args) > 1 {
					add(errs, n.Args[0])
				}
			case *ast.KeyValueExpr:
				switch k := name(n.Key); {
				case k == "Code" || k == "code":
					add(errs, n.Value)
				case reasonsV.MatchString(k):
					addAll(reasons, n.Value)
				}
			case *ast.FuncDecl:
				if n.Name.Name == "Code" && n.Body != nil {
					ast.Inspect(n.Body, func(m ast.Node) bool {
						if r, ok := m.(*ast.ReturnStmt); ok && len(r.Results) == 1 {
							add(errs, r.Results[0])
						}
						return true
					})
				}
			case *ast.ValueSpec:
				for i, nm := range n.Names {
					if i >= len(n.Values) {
						break
					}
					switch name := strings.ToLower(nm.Name); {
					case strings.HasPrefix(name, "code"):
						add(errs, n.Values[i])
					case strings.HasPrefix(name, "reason"):
						add(reasons, n.Values[i])
					}
				}
			case *ast.AssignStmt:
				if len(n.Lhs) != len(n.Rhs) {
					return true
				}
				for i, l := range n.Lhs {
					switch k := name(l); {
					case k == "code":
						add(errs, n.Rhs[i])
					case reasonsV.MatchString(k):
						addAll(reasons, n.Rhs[i])
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return errs, reasons, quoted
}
