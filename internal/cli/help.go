package cli

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// help prints the usage of purser or of the command path in args.
func (e *env) help(args []string) error {
	if len(args) == 0 {
		e.printMainUsage(e.stdio.Out)
		return nil
	}
	list := commands()
	c := findCommand(list, args[0])
	path := args[0]
	if c == nil || c.name == "help" {
		if c != nil {
			e.printMainUsage(e.stdio.Out)
			return nil
		}
		return usagef("", "unknown command %q", args[0])
	}
	for _, a := range args[1:] {
		sub := findCommand(c.sub, a)
		if sub == nil {
			return usagef(path, "unknown command %q", path+" "+a)
		}
		c, path = sub, path+" "+a
	}
	e.printCommandHelp(e.stdio.Out, c, path)
	return nil
}

func (e *env) printMainUsage(w io.Writer) {
	var b strings.Builder
	b.WriteString("Purser: a wallet and spend-control server for AI agents.\n\n")
	b.WriteString("usage: purser COMMAND [ARGUMENTS] [FLAGS]\n")
	sections := []struct {
		title string
		kind  cmdKind
	}{
		{"Server and offline commands", kindNone},
		{"Owner commands (owner token from PURSER_OWNER_TOKEN, else <data>/owner.token)", kindOwner},
		{"Agent commands (requests signed with --agent-key FILE or PURSER_AGENT_KEY)", kindAgent},
	}
	for _, s := range sections {
		fmt.Fprintf(&b, "\n%s:\n", s.title)
		for _, c := range commands() {
			writeLeaves(&b, c, c.name, s.kind)
		}
	}
	b.WriteString("\nMandate flags (agent create, mandate set; with mandate set, \"none\" clears a field):\n")
	for _, d := range mandateFlagList {
		// The flag's usage names its argument in backquotes, as the flag
		// package does; the listing is generated so no flag is left out.
		arg, usage := flag.UnquoteUsage(&flag.Flag{Usage: d.usage, Value: &mandateValue{d: d}})
		if d.kind == "bool" {
			arg = ""
		}
		writeFlag(&b, "--"+strings.TrimSpace(d.flag+" "+arg), usage)
	}
	b.WriteString("\nFlags of client commands:\n")
	writeFlag(&b, "--server URL", "server (env PURSER_SERVER; default "+DefaultServer+")")
	writeFlag(&b, "--data DIR", "data directory holding owner.token (default "+DefaultDataDir+")")
	writeFlag(&b, "--json", "print machine-readable JSON on stdout")
	writeFlag(&b, "--agent-key FILE", "agent commands: the agent's identity key (env PURSER_AGENT_KEY)")
	b.WriteString(`
Flags may come before or after arguments; -flag and --flag, --flag=value and --flag value all work.
Errors print "error: <message> (<code>)" on stderr.

Exit codes:
`)
	for _, x := range []struct {
		code int
		what string
	}{
		{ExitOK, "ok (a spend allowed, a payment made)"},
		{ExitFailure, "failure"},
		{ExitUsage, "usage error"},
		{ExitPending, "a spend is waiting for the owner's approval (its id is printed)"},
		{ExitRefused, "a spend was refused: the mandate (reason codes printed), or x402 fetch --max; proxy: also no grant covering the call, or a rate limit"},
		{ExitSellerFailed, "x402 fetch: the seller or facilitator failed after the payment was authorized; pay: sent, not confirmed yet"},
		{ExitUpstream, "proxy: the upstream answered a status other than 2xx (its body is printed)"},
	} {
		fmt.Fprintf(&b, "  %d  %s\n", x.code, x.what)
	}
	b.WriteString("\nRun 'purser COMMAND --help' for a command's flags.\n")
	io.WriteString(w, b.String())
}

// writeLeaves lists c's runnable commands of the given kind.
func writeLeaves(b *strings.Builder, c *command, path string, kind cmdKind) {
	if c.name == "help" {
		if kind == kindNone {
			writeLine(b, "help [COMMAND...]", c.summary)
		}
		return
	}
	if len(c.sub) == 0 || c.route != nil {
		if c.kind == kind && c.run != nil {
			line := path
			if c.args != "" {
				line += " " + c.args
			}
			writeLine(b, line, c.summary)
		}
	}
	for _, s := range c.sub {
		writeLeaves(b, s, path+" "+s.name, kind)
	}
}

func (e *env) printCommandHelp(w io.Writer, c *command, path string) {
	if len(c.sub) > 0 && c.run == nil {
		fmt.Fprintf(w, "usage: purser %s SUBCOMMAND\n\n%s\n\nsubcommands:\n", path, c.summary)
		var b strings.Builder
		for _, s := range c.sub {
			writeAll(&b, s, path+" "+s.name)
		}
		io.WriteString(w, b.String())
		fmt.Fprintf(w, "\nRun 'purser %s SUBCOMMAND --help' for its flags.\n", path)
		return
	}
	line := path
	if c.args != "" {
		line += " " + c.args
	}
	fmt.Fprintf(w, "usage: purser %s\n\n%s\n", line, c.summary)
	if len(c.sub) > 0 {
		fmt.Fprintf(w, "\nsubcommands:\n")
		var b strings.Builder
		for _, s := range c.sub {
			writeAll(&b, s, path+" "+s.name)
		}
		io.WriteString(w, b.String())
	}
	o := &opts{path: path}
	fs := e.flagSet(c, o)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintf(w, "\nflags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
}

func writeAll(b *strings.Builder, c *command, path string) {
	line := path
	if c.args != "" {
		line += " " + c.args
	}
	writeLine(b, line, c.summary)
}

// writeLine writes one command line of a listing: the synopsis, then the
// summary in a column, on the next line if the synopsis is long.
func writeLine(b *strings.Builder, synopsis, summary string) {
	const col = 40
	if len(synopsis) > col {
		fmt.Fprintf(b, "  %s\n  %-*s %s\n", synopsis, col, "", summary)
		return
	}
	fmt.Fprintf(b, "  %-*s %s\n", col, synopsis, summary)
}

// writeFlag writes one flag of a listing, its text in a column.
func writeFlag(b *strings.Builder, synopsis, text string) {
	const col = 22
	if len(synopsis) > col {
		fmt.Fprintf(b, "  %s\n  %-*s %s\n", synopsis, col, "", text)
		return
	}
	fmt.Fprintf(b, "  %-*s %s\n", col, synopsis, text)
}
