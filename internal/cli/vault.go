package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/purserhq/purser/sdk"
)

// vaultOpts are the flags of the vault commands.
type vaultOpts struct {
	upstream     string
	inject       string
	secretFile   string
	allowPrivate bool
	timeout      string
	grace        string
	methods      string
	paths        string
	price        string
	priceHeader  string
	maxPrice     string
	rate         string
	expires      string
	method       string
	toolPath     string
	description  string
	schema       string
	body         string
}

// maxSecret bounds a secret read from stdin or a file.
const maxSecret = 64 << 10

func vaultCommand() *command {
	list := &command{name: "list", summary: "list the vault's credentials (never their secrets)", kind: kindOwner, run: ownerRun(nil, runVaultList)}
	secretFlag := func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.vault.secretFile, "secret-file", "", "read the secret from `FILE` (default: stdin; never from the command line)")
	}
	toolList := &command{name: "list", args: "NAME", summary: "list a credential's MCP tools", kind: kindOwner, run: ownerRun([]string{"NAME"}, runVaultToolList)}
	tool := &command{
		name:    "tool",
		summary: "MCP tools over a credential: what purser mcp offers the agents granted it",
		sub: []*command{
			{name: "add", args: "NAME TOOL --method M --path TEMPLATE --description TEXT [--schema FILE_OR_JSON] [--body query|json|form] [--price P]",
				summary: "describe (or replace) an MCP tool over credential NAME", kind: kindOwner,
				flags: func(fs *flag.FlagSet, o *opts) {
					fs.StringVar(&o.vault.method, "method", "", "HTTP `METHOD` of the call (required)")
					fs.StringVar(&o.vault.toolPath, "path", "", "path `TEMPLATE` below the upstream's base path; {arg} is filled from the argument (required)")
					fs.StringVar(&o.vault.description, "description", "", "what the tool does, for the model (`TEXT`, required)")
					fs.StringVar(&o.vault.schema, "schema", "", "JSON Schema of the arguments: a `FILE` or the JSON itself (default: from the path's {args})")
					fs.StringVar(&o.vault.body, "body", "", "how the other arguments are sent: `query`, json or form (default: query for GET and DELETE, json otherwise)")
					fs.StringVar(&o.vault.price, "price", "", "what one call costs in USDC (`P`), instead of the grant's price")
				}, run: ownerRun([]string{"NAME", "TOOL"}, runVaultToolAdd)},
			toolList,
			{name: "rm", args: "NAME TOOL", summary: "remove a tool", kind: kindOwner, run: ownerRun([]string{"NAME", "TOOL"}, runVaultToolRm)},
		},
		def: toolList,
	}
	return &command{
		name:    "vault",
		summary: "the credential vault: API keys agents use through Purser's proxy without seeing them (docs/vault.md)",
		sub: []*command{
			{name: "put", args: "NAME --upstream URL --inject SPEC [--secret-file FILE] [--allow-private] [--timeout 30s]",
				summary: "store a credential; the secret is read from stdin or --secret-file, never the command line", kind: kindOwner,
				flags: func(fs *flag.FlagSet, o *opts) {
					fs.StringVar(&o.vault.upstream, "upstream", "", "the API's base `URL` (https://api.example.com[/base]); agents choose only the path below it (required)")
					fs.StringVar(&o.vault.inject, "inject", "", "where the secret goes: header:NAME=TEMPLATE, query:PARAM={secret} or basic:USER:{secret} (`SPEC`, required; e.g. 'header:Authorization=Bearer {secret}')")
					secretFlag(fs, o)
					fs.BoolVar(&o.vault.allowPrivate, "allow-private", false, "let the upstream resolve to private, loopback or link-local addresses")
					fs.StringVar(&o.vault.timeout, "timeout", "", "bound on a whole upstream call (`DURATION`; default 30s)")
				}, run: secretRun(runVaultPut)},
			{name: "rotate", args: "NAME [--secret-file FILE] [--grace 1h]", summary: "replace a credential's secret (stdin or --secret-file); --grace keeps the old one usable that long",
				kind: kindOwner, flags: func(fs *flag.FlagSet, o *opts) {
					secretFlag(fs, o)
					fs.StringVar(&o.vault.grace, "grace", "", "keep the previous secret usable for `DURATION` (default: none)")
				}, run: secretRun(runVaultRotate)},
			list,
			{name: "show", args: "NAME", summary: "show a credential: its secret's versions, grants and tools", kind: kindOwner, run: ownerRun([]string{"NAME"}, runVaultShow)},
			{name: "rm", args: "NAME", summary: "remove a credential with its secrets, grants and tools", kind: kindOwner, run: ownerRun([]string{"NAME"}, runVaultRm)},
			{name: "grant", args: "NAME AGENT --methods GET,POST --paths '/v1/search,/v1/items/*' [--price P | --price-header H --max-price P] [--rate 60/1m] [--expires 24h]",
				summary: "let an agent call the credential's upstream (granting again replaces the grant)", kind: kindOwner,
				flags: func(fs *flag.FlagSet, o *opts) {
					fs.StringVar(&o.vault.methods, "methods", "", "comma-separated HTTP `METHODS` the agent may use (required)")
					fs.StringVar(&o.vault.paths, "paths", "", "comma-separated `PATHS` the agent may call: exact, * for one segment, a trailing * for the rest (required)")
					fs.StringVar(&o.vault.price, "price", "", "what one call costs in USDC (`P`; default: unpriced, still counted and rate-limited)")
					fs.StringVar(&o.vault.priceHeader, "price-header", "", "the upstream's response `HEADER` that reports a call's price (needs --max-price)")
					fs.StringVar(&o.vault.maxPrice, "max-price", "", "with --price-header: held per call, and the most captured (`P`, USDC)")
					fs.StringVar(&o.vault.rate, "rate", "", "at most `COUNT/DURATION` calls (60/1m)")
					fs.StringVar(&o.vault.expires, "expires", "", "end the grant after `DURATION` (24h)")
				}, run: ownerRun([]string{"NAME", "AGENT"}, runVaultGrant)},
			{name: "revoke", args: "NAME AGENT", summary: "end an agent's grant at once", kind: kindOwner, run: ownerRun([]string{"NAME", "AGENT"}, runVaultRevoke)},
			tool,
		},
		def: list,
	}
}

// secretRun is the run of put and rotate: one argument, NAME, checked
// without echoing what else was given (a secret pasted as an argument
// must not be printed back), then the owner client.
func secretRun(fn func(ctx context.Context, e *env, o *opts, c *sdk.Owner, args []string) error) func(context.Context, *env, *opts, []string) error {
	return func(ctx context.Context, e *env, o *opts, args []string) error {
		if len(args) == 0 {
			return usagef(o.path, "missing NAME")
		}
		if len(args) > 1 {
			return usagef(o.path, "%d arguments after NAME, want none: the secret is read from stdin or --secret-file, never from the command line (the argument is not shown here)", len(args)-1)
		}
		c, err := e.ownerClient(o)
		if err != nil {
			return err
		}
		return fn(ctx, e, o, c, args)
	}
}

// readSecret reads the secret from --secret-file or stdin, whole, minus
// one trailing newline. A terminal on stdin is prompted with its echo
// off (Linux; elsewhere it is refused: the secret would show as typed).
func (e *env) readSecret(ctx context.Context, o *opts) (string, error) {
	var (
		b   []byte
		err error
		src string
	)
	if o.vault.secretFile != "" {
		src = o.vault.secretFile
		var f *os.File
		if f, err = os.Open(o.vault.secretFile); err == nil {
			b, err = io.ReadAll(io.LimitReader(f, maxSecret+1))
			f.Close()
		}
		if err != nil {
			return "", fmt.Errorf("--secret-file: %w", err)
		}
	} else {
		src = "stdin"
		if f, ok := e.stdio.In.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				// A terminal: prompt, echo off (Linux). A device that is
				// no terminal (/dev/null) is read like a file.
				s, tty, err := readTerminalSecret(ctx, f, e.stdio.Err, "secret (not echoed): ")
				if err != nil {
					return "", fmt.Errorf("read the secret from the terminal: %w", err)
				}
				if tty {
					if s == "" {
						return "", usagef(o.path, "the secret typed is empty")
					}
					return s, nil
				}
				if !canReadTerminal {
					return "", usagef(o.path, "the secret is read from stdin or --secret-file, and stdin is a terminal: pipe it in (printf '%%s' \"$API_KEY\" | purser %s ...) or use --secret-file FILE", o.path)
				}
			}
		}
		if e.stdio.In == nil {
			return "", usagef(o.path, "no secret: pipe it on stdin or use --secret-file FILE")
		}
		if b, err = io.ReadAll(io.LimitReader(e.stdio.In, maxSecret+1)); err != nil {
			return "", fmt.Errorf("read the secret from stdin: %w", err)
		}
	}
	if len(b) > maxSecret {
		return "", fmt.Errorf("the secret from %s is larger than %d bytes", src, maxSecret)
	}
	s := string(b)
	if t, ok := strings.CutSuffix(s, "\n"); ok {
		s = strings.TrimSuffix(t, "\r")
	}
	if s == "" {
		return "", usagef(o.path, "the secret from %s is empty", src)
	}
	return s, nil
}

// hideSecret keeps the secret out of an error that is about to be
// printed, whatever produced it.
func hideSecret(err error, secret string) error {
	if err == nil || secret == "" {
		return err
	}
	if msg := errorText(err); strings.Contains(msg, secret) {
		return errors.New(strings.ReplaceAll(msg, secret, "[secret]"))
	}
	var ue *usageError
	if errors.As(err, &ue) && strings.Contains(ue.msg, secret) {
		return errors.New(strings.ReplaceAll(ue.msg, secret, "[secret]"))
	}
	return err
}

func runVaultPut(ctx context.Context, e *env, o *opts, c *sdk.Owner, args []string) error {
	v := &o.vault
	if v.upstream == "" || v.inject == "" {
		return usagef(o.path, "--upstream and --inject are required")
	}
	// The template must say where the secret goes; a spec without
	// {secret} most likely holds the secret itself. Not echoed.
	if !strings.Contains(v.inject, "{secret}") {
		return usagef(o.path, "--inject must contain {secret}, where the secret goes (e.g. 'header:Authorization=Bearer {secret}'); the secret itself comes from stdin or --secret-file (the spec given is not shown here)")
	}
	if v.timeout != "" {
		if _, err := time.ParseDuration(v.timeout); err != nil {
			return usagef(o.path, "--timeout %q: want a duration such as 30s", v.timeout)
		}
	}
	secret, err := e.readSecret(ctx, o)
	if err != nil {
		return err
	}
	cr, err := c.PutCredential(ctx, sdk.PutCredentialRequest{Name: args[0], Upstream: v.upstream, Inject: v.inject, Secret: secret,
		AllowPrivate: v.allowPrivate, Timeout: v.timeout})
	if err != nil {
		return hideSecret(err, secret)
	}
	if o.json {
		return writeJSON(e.stdio.Out, cr)
	}
	fmt.Fprintf(e.stdio.Out, "credential %s stored (version %d): %s, %s\n", cr.Name, cr.Version, cr.Upstream, cr.Inject)
	fmt.Fprintf(e.stdio.Out, "grant an agent its use: purser vault grant %s AGENT --methods GET --paths '/*'\n", cr.Name)
	return nil
}

func runVaultRotate(ctx context.Context, e *env, o *opts, c *sdk.Owner, args []string) error {
	if o.vault.grace != "" {
		if _, err := time.ParseDuration(o.vault.grace); err != nil {
			return usagef(o.path, "--grace %q: want a duration such as 1h", o.vault.grace)
		}
	}
	secret, err := e.readSecret(ctx, o)
	if err != nil {
		return err
	}
	cr, err := c.RotateCredential(ctx, args[0], sdk.RotateCredentialRequest{Secret: secret, Grace: o.vault.grace})
	if err != nil {
		return hideSecret(err, secret)
	}
	if o.json {
		return writeJSON(e.stdio.Out, cr)
	}
	fmt.Fprintf(e.stdio.Out, "credential %s rotated: version %d is current\n", cr.Name, cr.Version)
	if o.vault.grace != "" {
		fmt.Fprintf(e.stdio.Out, "the previous version stays usable for %s\n", o.vault.grace)
	}
	return nil
}

func runVaultList(ctx context.Context, e *env, o *opts, c *sdk.Owner, _ []string) error {
	l, err := c.Credentials(ctx)
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(e.stdio.Out, map[string]any{"credentials": nonNilSlice(l)})
	}
	if len(l) == 0 {
		fmt.Fprintln(e.stdio.Out, "no credentials")
		return nil
	}
	t := newTable(e.stdio.Out)
	fmt.Fprintln(t, "NAME\tUPSTREAM\tINJECT\tVERSION\tPRIVATE\tUPDATED")
	for _, cr := range l {
		fmt.Fprintf(t, "%s\t%s\t%s\t%d\t%t\t%s\n", cr.Name, cr.Upstream, cr.Inject, cr.Version, cr.AllowPrivate, timeText(cr.UpdatedAt))
	}
	return t.Flush()
}

func runVaultShow(ctx context.Context, e *env, o *opts, c *sdk.Owner, args []string) error {
	cr, err := c.Credential(ctx, args[0])
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(e.stdio.Out, cr)
	}
	w := e.stdio.Out
	fmt.Fprintf(w, "credential %s (%s)\n", cr.Name, cr.ID)
	fmt.Fprintf(w, "upstream:      %s\n", cr.Upstream)
	fmt.Fprintf(w, "inject:        %s\n", cr.Inject)
	fmt.Fprintf(w, "allow private: %t\n", cr.AllowPrivate)
	fmt.Fprintf(w, "timeout:       %s\n", orDash(cr.Timeout))
	fmt.Fprintf(w, "version:       %d\n", cr.Version)
	if len(cr.Versions) > 0 {
		fmt.Fprintln(w, "\nversions:")
		t := newTable(w)
		fmt.Fprintln(t, "  VERSION\tCURRENT\tCREATED\tRETIRES")
		for _, v := range cr.Versions {
			retires := "-"
			if v.RetiresAt != nil {
				retires = timeText(*v.RetiresAt)
			}
			fmt.Fprintf(t, "  %d\t%t\t%s\t%s\n", v.Version, v.Current, timeText(v.CreatedAt), retires)
		}
		t.Flush()
	}
	fmt.Fprintln(w, "\ngrants:")
	if len(cr.Grants) == 0 {
		fmt.Fprintln(w, "  none")
	} else {
		printGrants(w, cr.Grants, "  ")
	}
	fmt.Fprintln(w, "\ntools:")
	if len(cr.Tools) == 0 {
		fmt.Fprintln(w, "  none")
	} else {
		printTools(w, cr.Tools, "  ")
	}
	return nil
}

func printGrants(w io.Writer, l []sdk.Grant, indent string) {
	t := newTable(w)
	fmt.Fprintln(t, indent+"AGENT\tMETHODS\tPATHS\tPRICE\tRATE\tEXPIRES\tSTATUS")
	for _, g := range l {
		agent := g.AgentName
		if agent == "" {
			agent = g.AgentID
		}
		fmt.Fprintf(t, "%s%s\t%s\t%s\t%s\t%s\t%s\t%s\n", indent, agent, strings.Join(g.Methods, ","), strings.Join(g.Paths, ","),
			priceText(g.Price, g.PriceHeader, g.MaxPrice), orDash(g.Rate), timePtrText(g.ExpiresAt), g.Status)
	}
	t.Flush()
}

func printTools(w io.Writer, l []sdk.Tool, indent string) {
	t := newTable(w)
	fmt.Fprintln(t, indent+"TOOL\tMETHOD\tPATH\tBODY\tPRICE\tDESCRIPTION")
	for _, tl := range l {
		fmt.Fprintf(t, "%s%s\t%s\t%s\t%s\t%s\t%s\n", indent, tl.Name, tl.Method, tl.Path, orDash(tl.Body), orDash(tl.Price), tl.Description)
	}
	t.Flush()
}

// priceText says what a call costs: a fixed price, what the upstream
// reports (up to a maximum), or nothing.
func priceText(price, header, max string) string {
	switch {
	case header != "":
		return fmt.Sprintf("%s (≤ %s)", header, max)
	case price != "":
		return price
	}
	return "-"
}

func timeText(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func timePtrText(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return timeText(*t)
}

func nonNilSlice[T any](l []T) []T {
	if l == nil {
		return []T{}
	}
	return l
}

func runVaultRm(ctx context.Context, e *env, o *opts, c *sdk.Owner, args []string) error {
	cr, err := c.DeleteCredential(ctx, args[0])
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(e.stdio.Out, cr)
	}
	fmt.Fprintf(e.stdio.Out, "removed credential %s (%s)\n", cr.Name, cr.Upstream)
	return nil
}

func runVaultGrant(ctx context.Context, e *env, o *opts, c *sdk.Owner, args []string) error {
	v := &o.vault
	req := sdk.GrantRequest{Agent: args[1], Methods: splitList(strings.ToUpper(v.methods)), Paths: splitList(v.paths),
		Price: v.price, PriceHeader: v.priceHeader, MaxPrice: v.maxPrice, Rate: v.rate, Expires: v.expires}
	switch {
	case len(req.Methods) == 0 || len(req.Paths) == 0:
		return usagef(o.path, "--methods and --paths are required")
	case v.price != "" && v.priceHeader != "":
		return usagef(o.path, "--price and --price-header exclude each other: a fixed price, or the upstream's, up to --max-price")
	case v.priceHeader != "" && v.maxPrice == "":
		return usagef(o.path, "--price-header needs --max-price: what each call holds, and the most it may cost")
	case v.maxPrice != "" && v.priceHeader == "":
		return usagef(o.path, "--max-price goes with --price-header")
	}
	if v.expires != "" {
		if _, err := time.ParseDuration(v.expires); err != nil {
			return usagef(o.path, "--expires %q: want a duration such as 24h", v.expires)
		}
	}
	g, err := c.Grant(ctx, args[0], req)
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(e.stdio.Out, g)
	}
	agent := g.AgentName
	if agent == "" {
		agent = g.AgentID
	}
	fmt.Fprintf(e.stdio.Out, "granted %s on %s: %s %s, price %s, rate %s, expires %s\n", agent, g.Credential, strings.Join(g.Methods, ","),
		strings.Join(g.Paths, ","), priceText(g.Price, g.PriceHeader, g.MaxPrice), orDash(g.Rate), timePtrText(g.ExpiresAt))
	return nil
}

func runVaultRevoke(ctx context.Context, e *env, o *opts, c *sdk.Owner, args []string) error {
	g, err := c.RevokeGrant(ctx, args[0], args[1])
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(e.stdio.Out, g)
	}
	agent := g.AgentName
	if agent == "" {
		agent = g.AgentID
	}
	fmt.Fprintf(e.stdio.Out, "revoked %s's grant on %s\n", agent, g.Credential)
	return nil
}

// schemaArg is --schema: JSON given inline (it starts with "{"), else
// the file that holds it.
func schemaArg(o *opts) (json.RawMessage, error) {
	s := strings.TrimSpace(o.vault.schema)
	if s == "" {
		return nil, nil
	}
	b := []byte(s)
	if !strings.HasPrefix(s, "{") {
		var err error
		if b, err = os.ReadFile(o.vault.schema); err != nil {
			return nil, usagef(o.path, "--schema: %v (give a file or the JSON itself)", err)
		}
	}
	if !json.Valid(b) {
		return nil, usagef(o.path, "--schema is not valid JSON")
	}
	var c bytes.Buffer
	if err := json.Compact(&c, b); err != nil {
		return nil, usagef(o.path, "--schema: %v", err)
	}
	return c.Bytes(), nil
}

func runVaultToolAdd(ctx context.Context, e *env, o *opts, c *sdk.Owner, args []string) error {
	v := &o.vault
	if v.method == "" || v.toolPath == "" || v.description == "" {
		return usagef(o.path, "--method, --path and --description are required")
	}
	switch v.body {
	case "", "query", "json", "form":
	default:
		return usagef(o.path, "--body %q: want query, json or form", v.body)
	}
	schema, err := schemaArg(o)
	if err != nil {
		return err
	}
	tl, err := c.PutTool(ctx, args[0], sdk.ToolRequest{Name: args[1], Description: v.description, Method: strings.ToUpper(v.method),
		Path: v.toolPath, Schema: schema, Body: v.body, Price: v.price})
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(e.stdio.Out, tl)
	}
	fmt.Fprintf(e.stdio.Out, "tool %s on %s: %s %s\n", tl.Name, tl.Credential, tl.Method, tl.Path)
	return nil
}

func runVaultToolList(ctx context.Context, e *env, o *opts, c *sdk.Owner, args []string) error {
	l, err := c.Tools(ctx, args[0])
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(e.stdio.Out, map[string]any{"tools": nonNilSlice(l)})
	}
	if len(l) == 0 {
		fmt.Fprintf(e.stdio.Out, "no tools on %s\n", args[0])
		return nil
	}
	printTools(e.stdio.Out, l, "")
	return nil
}

func runVaultToolRm(ctx context.Context, e *env, o *opts, c *sdk.Owner, args []string) error {
	tl, err := c.DeleteTool(ctx, args[0], args[1])
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(e.stdio.Out, tl)
	}
	fmt.Fprintf(e.stdio.Out, "removed tool %s from %s\n", tl.Name, tl.Credential)
	return nil
}
