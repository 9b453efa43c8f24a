package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/sdk"
)

// DefaultServer is the server client commands talk to unless --server or
// PURSER_SERVER says otherwise.
const DefaultServer = "http://127.0.0.1:8402"

// DefaultDataDir is the data directory of serve and of the owner token.
const DefaultDataDir = "./purser-data"

// command is a node of the command tree: a leaf runs, a group dispatches
// to its subcommands.
type command struct {
	name    string
	args    string // the synopsis after the name, e.g. "NAME --key-out FILE [flags]"
	summary string
	// flags registers the command's own flags (nil: none).
	flags func(fs *flag.FlagSet, o *opts)
	// kind selects the global flags: owner, agent or none (serve, offline).
	kind cmdKind
	// bodyData: --data is the command's own flag (a request body, as in
	// x402 fetch --data BODY), not the data directory.
	bodyData bool
	run      func(ctx context.Context, e *env, o *opts, args []string) error
	// sub are the subcommands of a group; def is run when none is named
	// (nil: a subcommand is required).
	sub []*command
	def *command
	// route lets a group pick a subcommand from its first argument
	// (spend: "status ID" or the flags of a new spend).
	route func(args []string) (*command, []string)
}

type cmdKind int

const (
	kindNone cmdKind = iota
	kindOwner
	kindAgent
	kindAgentNoData // agent globals without --data
)

// opts holds every flag a command may have; each command registers only
// the ones it uses.
type opts struct {
	path string // "agent create"

	// globals
	server   string
	data     string
	json     bool
	agentKey string

	// command flags
	keyOut       string
	mandate      *mandateFlags
	reason       string
	n            int
	format       string
	out          string
	auditKey     string
	trusted      string // audit verify --trusted
	amount       string
	payee        string
	host         string
	rail         string
	asset        string
	network      string
	idemKey      string
	memo         string
	agent        string
	status       string
	cancelSigned bool
	ownerName    string // owner invite --name
	passkey      string // owner revoke --passkey
	custody      string // agent create --custody
	recoveryKey  string // agent create / recover / rotate-key --recovery-key
	keyFile      string // agent rotate-key --key-file (a 2of2 agent's current key file)
	serve        serveOpts
	bench        benchOpts
	x402         x402Opts
	resolve      resolveOpts
	fac          facilitatorOpts
	demo         demoOpts
	mcp          mcpOpts
	webhook      webhookOpts
	vault        vaultOpts
	proxy        proxyOpts
}

// commands is the whole tree, in the order `purser help` lists it.
func commands() []*command {
	return []*command{
		serveCommand(),
		agentCommand(),
		mandateCommand(),
		approvalsCommand(),
		approveCommand(),
		denyCommand(),
		ownerCommand(),
		webhookCommand(),
		vaultCommand(),
		auditCommand(),
		spendCommand(),
		spendsCommand(),
		limitsCommand(),
		x402Command(),
		payCommand(),
		proxyCommand(),
		balanceCommand(),
		mcpCommand(),
		fundCommand(),
		chainsCommand(),
		facilitatorCommand(),
		demoCommand(),
		benchCommand(),
		{name: "help", args: "[COMMAND...]", summary: "show help for purser or a command", run: nil},
	}
}

func findCommand(list []*command, name string) *command {
	for _, c := range list {
		if c.name == name {
			return c
		}
	}
	return nil
}

// dispatch runs the command named by args.
func (e *env) dispatch(ctx context.Context, args []string) error {
	// Global flags may come before the command name.
	pre := flag.NewFlagSet("purser", flag.ContinueOnError)
	pre.SetOutput(io.Discard)
	var g opts
	registerGlobals(pre, &g, kindAgent)
	pre.BoolVar(new(bool), "help", false, "")
	pre.BoolVar(new(bool), "h", false, "")
	if err := pre.Parse(args); err != nil {
		return usagef("", "%s", flagErrText(err))
	}
	set := given(pre)
	if set["help"] || set["h"] {
		return e.help(nil)
	}
	args = pre.Args()
	e.g = g
	if len(args) == 0 {
		e.printMainUsage(e.stdio.Err)
		return &exitError{code: ExitUsage}
	}
	list := commands()
	if args[0] == "help" {
		return e.help(args[1:])
	}
	c := findCommand(list, args[0])
	if c == nil {
		return usagef("", "unknown command %q", args[0])
	}
	return e.runCommand(ctx, c, c.name, args[1:])
}

func (e *env) runCommand(ctx context.Context, c *command, path string, args []string) error {
	if c.route != nil {
		if sub, rest := c.route(args); sub != nil {
			return e.runCommand(ctx, sub, path+" "+sub.name, rest)
		}
	}
	if len(c.sub) > 0 && c.run == nil {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help" || args[0] == "help") {
			e.printCommandHelp(e.stdio.Out, c, path)
			return errHelp
		}
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			sub := findCommand(c.sub, args[0])
			if sub == nil {
				return usagef(path, "unknown command %q", path+" "+args[0])
			}
			return e.runCommand(ctx, sub, path+" "+sub.name, args[1:])
		}
		if c.def == nil {
			return usagef(path, "%s needs a subcommand: %s", path, subNames(c))
		}
		return e.runCommand(ctx, c.def, path+" "+c.def.name, args)
	}
	o := &opts{path: path}
	fs := e.flagSet(c, o)
	pos, err := parseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		e.printCommandHelp(e.stdio.Out, c, path)
		return errHelp
	}
	if err != nil {
		return usagef(path, "%s", flagErrText(err))
	}
	return c.run(ctx, e, o, pos)
}

// flagSet builds the flag set of a leaf command, globals included.
func (e *env) flagSet(c *command, o *opts) *flag.FlagSet {
	fs := flag.NewFlagSet("purser "+o.path, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	// Globals given before the command name are the defaults here.
	o.server, o.data, o.json, o.agentKey = e.g.server, e.g.data, e.g.json, e.g.agentKey
	kind := c.kind
	if c.bodyData {
		kind = kindAgentNoData
	}
	registerGlobals(fs, o, kind)
	if c.flags != nil {
		c.flags(fs, o)
	}
	return fs
}

func registerGlobals(fs *flag.FlagSet, o *opts, kind cmdKind) {
	if kind == kindNone {
		return
	}
	fs.StringVar(&o.server, "server", o.server, "server `URL` (env PURSER_SERVER; default "+DefaultServer+")")
	fs.BoolVar(&o.json, "json", o.json, "print machine-readable JSON on stdout")
	if kind == kindAgentNoData {
		kind = kindAgent
	} else if kind == kindOwner || kind == kindAgent {
		fs.StringVar(&o.data, "data", o.data, "data `DIR` holding owner.token when PURSER_OWNER_TOKEN is unset (default "+DefaultDataDir+")")
	}
	if kind == kindAgent {
		fs.StringVar(&o.agentKey, "agent-key", o.agentKey, "agent identity key `FILE` (env PURSER_AGENT_KEY)")
	}
}

// flagErrText shortens the flag package's errors.
func flagErrText(err error) string {
	s := err.Error()
	if rest, ok := strings.CutPrefix(s, "flag provided but not defined: "); ok {
		return "unknown flag " + rest
	}
	return s
}

func subNames(c *command) string {
	var names []string
	for _, s := range c.sub {
		names = append(names, s.name)
	}
	return strings.Join(names, ", ")
}

// serverURL resolves --server, then PURSER_SERVER, then the default.
func (e *env) serverURL(o *opts) string {
	if o.server != "" {
		return o.server
	}
	if v := e.getenv("PURSER_SERVER"); v != "" {
		return v
	}
	return DefaultServer
}

func (e *env) dataDir(o *opts) string {
	if o.data != "" {
		return o.data
	}
	return DefaultDataDir
}

// ownerToken resolves PURSER_OWNER_TOKEN, then <data>/owner.token.
func (e *env) ownerToken(o *opts) (string, error) {
	if v := strings.TrimSpace(e.getenv("PURSER_OWNER_TOKEN")); v != "" {
		return v, nil
	}
	path := filepath.Join(e.dataDir(o), "owner.token")
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("no owner token: set PURSER_OWNER_TOKEN or point --data at the server's data directory (no %s)", path)
		}
		return "", fmt.Errorf("owner token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("owner token file %s is empty", path)
	}
	return tok, nil
}

// ownerClient is a client with the owner's token.
func (e *env) ownerClient(o *opts) (*sdk.Owner, error) {
	tok, err := e.ownerToken(o)
	if err != nil {
		return nil, err
	}
	c, err := sdk.NewOwner(e.serverURL(o), tok, e.sdkOptions()...)
	if err != nil {
		return nil, usagef(o.path, "%s", strings.TrimPrefix(err.Error(), "sdk: "))
	}
	if host, ok := plainHTTPRemote(e.serverURL(o)); ok {
		fmt.Fprintf(e.stdio.Err, "purser: warning: sending the owner token over plain http:// to %s, which is not this machine: anyone on the way can read it and use it. Put a TLS proxy in front of the server and use https://, or use a loopback address.\n", host)
	}
	return c, nil
}

// plainHTTPRemote reports the host of an http:// URL that is not
// loopback: the owner token would cross a network unencrypted.
func plainHTTPRemote(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" {
		return "", false
	}
	h := u.Hostname()
	if strings.EqualFold(h, "localhost") {
		return "", false
	}
	if ip, err := netip.ParseAddr(h); err == nil && ip.Unmap().IsLoopback() {
		return "", false
	}
	return u.Host, true
}

// agentClient is a client signing with the agent key of --agent-key or
// PURSER_AGENT_KEY.
func (e *env) agentClient(o *opts) (*sdk.Agent, error) {
	path := o.agentKey
	if path == "" {
		path = e.getenv("PURSER_AGENT_KEY")
	}
	if path == "" {
		return nil, usagef(o.path, "no agent key: pass --agent-key FILE or set PURSER_AGENT_KEY")
	}
	key, err := sdk.LoadKeyFile(path)
	if err != nil {
		return nil, err
	}
	opts := e.sdkOptions()
	// A pinned deployment id: signatures are valid there only, whatever
	// the server at --server claims to be.
	if v := strings.TrimSpace(e.getenv("PURSER_DEPLOYMENT")); v != "" {
		if _, err := agentauth.ParseDeployment(v); err != nil {
			return nil, fmt.Errorf("PURSER_DEPLOYMENT: %w", err)
		}
		opts = append(opts, sdk.WithDeployment(v))
	}
	c, err := sdk.NewAgent(e.serverURL(o), key, opts...)
	if err != nil {
		return nil, usagef(o.path, "%s", strings.TrimPrefix(err.Error(), "sdk: "))
	}
	return c, nil
}

// sdkOptions are the options of every client the CLI makes.
func (e *env) sdkOptions(extra ...sdk.Option) []sdk.Option {
	opts := append([]sdk.Option{sdk.WithUserAgent("purser-cli")}, e.clientOpts...)
	return append(opts, extra...)
}

// wantArgs checks the number of positionals.
func wantArgs(o *opts, args []string, names ...string) error {
	if len(args) < len(names) {
		return usagef(o.path, "missing %s", strings.Join(names[len(args):], " "))
	}
	if len(args) > len(names) {
		return usagef(o.path, "unexpected argument %q", args[len(names)])
	}
	return nil
}

// ownerRun is the run of an owner command that takes exactly the named
// arguments: it checks them, builds the owner client and calls fn.
func ownerRun(names []string, fn func(ctx context.Context, e *env, o *opts, c *sdk.Owner, args []string) error) func(context.Context, *env, *opts, []string) error {
	return func(ctx context.Context, e *env, o *opts, args []string) error {
		if err := wantArgs(o, args, names...); err != nil {
			return err
		}
		c, err := e.ownerClient(o)
		if err != nil {
			return err
		}
		return fn(ctx, e, o, c, args)
	}
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
