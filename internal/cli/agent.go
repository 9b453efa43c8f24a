package cli

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/sdk"
)

func agentCommand() *command {
	keyOut := func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.keyOut, "key-out", "", "write the new identity key to `FILE` (mode 0600; never overwritten)")
	}
	status := func(name, summary string, call func(*sdk.Owner, context.Context, string) (*sdk.AgentInfo, error)) *command {
		return &command{name: name, args: "NAME", summary: summary, kind: kindOwner,
			run: func(ctx context.Context, e *env, o *opts, args []string) error {
				return runAgentStatus(ctx, e, o, args, call)
			}}
	}
	return &command{
		name:    "agent",
		summary: "create and manage agents",
		sub: []*command{
			{name: "create", args: "NAME --key-out FILE [--custody server|2of2 [--recovery-key FILE.pub]] [mandate flags]", kind: kindOwner,
				summary: "create an agent with a new identity key and an optional mandate; --custody 2of2 co-signs its wallet (the agent's share goes into the key file)",
				flags: func(fs *flag.FlagSet, o *opts) {
					keyOut(fs, o)
					fs.StringVar(&o.custody, "custody", "server", "who holds the wallet key: `server` (Purser alone) or 2of2 (a key shared by the agent and Purser: neither can sign alone)")
					fs.StringVar(&o.recoveryKey, "recovery-key", "", "2of2: encrypt the agent's share to this owner recovery public key `FILE` (owner recovery-key writes FILE.pub); the server keeps the ciphertext for agent recover")
					o.mandate = &mandateFlags{}
					o.mandate.register(fs, false)
				},
				run: runAgentCreate},
			{name: "list", summary: "list agents", kind: kindOwner, run: runAgentList},
			{name: "show", args: "NAME", summary: "show an agent (its custody and wallets)", kind: kindOwner, run: runAgentShow},
			{name: "recover", args: "NAME --recovery-key FILE --key-out FILE", kind: kindOwner,
				summary: "restore a 2of2 agent whose key file was lost: decrypt its share here with the owner's recovery key and give it a new identity key",
				flags: func(fs *flag.FlagSet, o *opts) {
					fs.StringVar(&o.recoveryKey, "recovery-key", "", "the owner's private recovery key `FILE` (owner recovery-key --out)")
					fs.StringVar(&o.keyOut, "key-out", "", "write the agent's new key file to `FILE` (mode 0600; never overwritten)")
				},
				run: runAgentRecover},
			{name: "freeze", args: "NAME [--cancel-signed]", kind: kindOwner,
				summary: "freeze an agent: nothing more of it is authorized, signed or executed until unfrozen",
				flags: func(fs *flag.FlagSet, o *opts) {
					fs.BoolVar(&o.cancelSigned, "cancel-signed", false, "also cancel on chain every authorization signed for the agent and not used yet; each hold is released once its cancellation is mined")
				},
				run: runAgentFreeze},
			status("unfreeze", "unfreeze an agent", (*sdk.Owner).Unfreeze),
			status("revoke", "revoke an agent for good", (*sdk.Owner).Revoke),
			{name: "rotate-key", args: "NAME --key-out FILE [--key-file FILE] [--recovery-key FILE.pub]", kind: kindOwner,
				summary: "give an agent a new identity key; the old one stops working (2of2: both wallet shares are refreshed too, the address stays)",
				flags: func(fs *flag.FlagSet, o *opts) {
					fs.StringVar(&o.keyOut, "key-out", "", "write the agent's new key file to `FILE` (mode 0600; never overwritten)")
					fs.StringVar(&o.keyFile, "key-file", "", "2of2: the agent's current key file `FILE`, whose share is refreshed (default --agent-key or PURSER_AGENT_KEY)")
					fs.StringVar(&o.recoveryKey, "recovery-key", "", "2of2: encrypt the new share to this owner recovery public key `FILE` (required when the agent has a recovery copy: the old one dies with the old share)")
				},
				run: runAgentRotateKey},
			agentLimitsCommand(),
			agentBalancesCommand(),
		},
	}
}

// newKeyFile generates an identity key and writes it to path.
func newKeyFile(o *opts) (*ecdsa.PrivateKey, error) {
	if o.keyOut == "" {
		return nil, usagef(o.path, "--key-out FILE is required: the agent's identity key is written there")
	}
	if _, err := os.Lstat(o.keyOut); err == nil {
		return nil, fmt.Errorf("%s already exists; refusing to overwrite an identity key", o.keyOut)
	}
	key, err := agentauth.GenerateKey()
	if err != nil {
		return nil, err
	}
	if err := agentauth.WriteKeyFile(o.keyOut, key); err != nil {
		return nil, err
	}
	return key, nil
}

// dropKeyFile removes a key file just written when the server refused
// it. If the outcome is unknown (no answer), the key is kept: the server
// may have registered it.
func dropKeyFile(e *env, path string, err error) {
	var ae *sdk.Error
	if errors.As(err, &ae) {
		os.Remove(path)
		return
	}
	fmt.Fprintf(e.stdio.Err, "note: no answer from the server; the key was kept in %s in case it was registered\n", path)
}

func runAgentCreate(ctx context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args, "NAME"); err != nil {
		return err
	}
	if o.keyOut == "" {
		return usagef(o.path, "--key-out FILE is required: the agent's identity key is written there")
	}
	var recoveryPub []byte
	switch o.custody {
	case "", "server":
		o.custody = "server"
		if o.recoveryKey != "" {
			return usagef(o.path, "--recovery-key is for --custody 2of2: a server-custody wallet has no agent share to recover")
		}
	case "2of2":
		if o.recoveryKey != "" {
			var err error
			if recoveryPub, err = readRecoveryKey(o.recoveryKey, recoveryPublicField); err != nil {
				return err
			}
		}
	default:
		return usagef(o.path, "--custody %q: want server or 2of2", o.custody)
	}
	var mandate json.RawMessage
	if !o.mandate.empty() {
		var err error
		if mandate, err = o.mandate.apply(nil); err != nil {
			return err
		}
	}
	c, err := e.ownerClient(o)
	if err != nil {
		return err
	}
	key, err := newKeyFile(o)
	if err != nil {
		return err
	}
	a, err := c.CreateAgent(ctx, sdk.CreateAgentRequest{Name: args[0], IdentityAddress: agentauth.Address(key).Hex(), Mandate: mandate,
		Custody: custodyField(o.custody)})
	if err != nil {
		dropKeyFile(e, o.keyOut, err)
		return err
	}
	if o.custody == "2of2" {
		if err := cosignKeygen(ctx, c, a.ID, o.keyOut, recoveryPub); err != nil {
			return fmt.Errorf("agent %s was created (identity key in %s) but its co-signed wallet was not: %w; revoke it and create it again", a.Name, o.keyOut, err)
		}
		if a, err = c.Agent(ctx, a.ID); err != nil {
			return err
		}
	}
	if o.json {
		return writeRaw(e.stdio.Out, a.Raw)
	}
	printAgent(e.stdio.Out, a)
	if o.custody == "2of2" {
		fmt.Fprintf(e.stdio.Out, "identity key and co-signing share written to %s\n", o.keyOut)
		if recoveryPub != nil {
			fmt.Fprintf(e.stdio.Out, "the share is also encrypted to the recovery key %s (stored by the server for agent recover)\n", o.recoveryKey)
		} else {
			fmt.Fprintf(e.stdio.Err, "note: no --recovery-key: %s holds the only copy of the agent's share; without it the wallet cannot sign again\n", o.keyOut)
		}
		return nil
	}
	fmt.Fprintf(e.stdio.Out, "identity key written to %s\n", o.keyOut)
	return nil
}

func printAgent(w io.Writer, a *sdk.AgentInfo) {
	t := newTable(w)
	fmt.Fprintf(t, "agent\t%s\n", a.Name)
	fmt.Fprintf(t, "id\t%s\n", a.ID)
	fmt.Fprintf(t, "status\t%s\n", a.Status)
	fmt.Fprintf(t, "identity address\t%s\n", a.IdentityAddress)
	custody := a.Custody
	if custody == "" {
		custody = "server" // a server that predates co-signed wallets
	}
	fmt.Fprintf(t, "custody\t%s\n", custody)
	for _, wl := range a.Wallets {
		fmt.Fprintf(t, "wallet\t%s %s\n", wl.Network, wl.Address)
	}
	fmt.Fprintf(t, "mandate version\t%d\n", a.MandateVersion)
	t.Flush()
}

func runAgentList(ctx context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args); err != nil {
		return err
	}
	c, err := e.ownerClient(o)
	if err != nil {
		return err
	}
	as, err := sdk.Collect(c.Agents(ctx))
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(e.stdio.Out, rawList("agents", as, func(a *sdk.AgentInfo) json.RawMessage { return a.Raw }))
	}
	if len(as) == 0 {
		fmt.Fprintln(e.stdio.Out, "no agents")
		return nil
	}
	t := newTable(e.stdio.Out)
	fmt.Fprintln(t, "NAME\tSTATUS\tID\tIDENTITY\tMANDATE")
	for _, a := range as {
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\tv%d\n", a.Name, a.Status, a.ID, a.IdentityAddress, a.MandateVersion)
	}
	return t.Flush()
}

func runAgentShow(ctx context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args, "NAME"); err != nil {
		return err
	}
	c, err := e.ownerClient(o)
	if err != nil {
		return err
	}
	a, err := c.Agent(ctx, args[0])
	if err != nil {
		return err
	}
	if o.json {
		return writeRaw(e.stdio.Out, a.Raw)
	}
	printAgent(e.stdio.Out, a)
	return nil
}

func runAgentStatus(ctx context.Context, e *env, o *opts, args []string, call func(*sdk.Owner, context.Context, string) (*sdk.AgentInfo, error)) error {
	if err := wantArgs(o, args, "NAME"); err != nil {
		return err
	}
	c, err := e.ownerClient(o)
	if err != nil {
		return err
	}
	a, err := call(c, ctx, args[0])
	if err != nil {
		return err
	}
	if o.json {
		return writeRaw(e.stdio.Out, a.Raw)
	}
	fmt.Fprintf(e.stdio.Out, "agent %s is %s\n", a.Name, a.Status)
	return nil
}

func runAgentRotateKey(ctx context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args, "NAME"); err != nil {
		return err
	}
	if o.keyOut == "" {
		return usagef(o.path, "--key-out FILE is required: the new identity key is written there")
	}
	c, err := e.ownerClient(o)
	if err != nil {
		return err
	}
	ag, err := c.Agent(ctx, args[0])
	if err != nil {
		return err
	}
	if ag.Custody == "2of2" {
		return runCosignRotateKey(ctx, e, o, c, ag)
	}
	if o.keyFile != "" || o.recoveryKey != "" {
		return usagef(o.path, "--key-file and --recovery-key are for 2of2 agents: agent %s's wallet is server-held", ag.Name)
	}
	key, err := newKeyFile(o)
	if err != nil {
		return err
	}
	a, err := c.RotateKey(ctx, args[0], agentauth.Address(key).Hex())
	if err != nil {
		dropKeyFile(e, o.keyOut, err)
		return err
	}
	if o.json {
		return writeRaw(e.stdio.Out, a.Raw)
	}
	fmt.Fprintf(e.stdio.Out, "agent %s now has identity address %s\nnew identity key written to %s; the old key no longer works\n", a.Name, a.IdentityAddress, o.keyOut)
	return nil
}

func runAgentFreeze(ctx context.Context, e *env, o *opts, args []string) error {
	if !o.cancelSigned {
		return runAgentStatus(ctx, e, o, args, (*sdk.Owner).Freeze)
	}
	if err := wantArgs(o, args, "NAME"); err != nil {
		return err
	}
	c, err := e.ownerClient(o)
	if err != nil {
		return err
	}
	a, cs, err := c.FreezeCancelSigned(ctx, args[0])
	if err != nil {
		return err
	}
	if o.json {
		return writeRaw(e.stdio.Out, a.Raw)
	}
	fmt.Fprintf(e.stdio.Out, "agent %s is %s\n", a.Name, a.Status)
	if len(cs) == 0 {
		fmt.Fprintln(e.stdio.Out, "no signed authorization was open")
		return nil
	}
	t := newTable(e.stdio.Out)
	fmt.Fprintln(t, "SPEND_ID\tSTATUS\tREASONS\tNOTE")
	pending := false
	for _, x := range cs {
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\n", x.SpendID, x.Status, orDash(strings.Join(x.Reasons, ",")), orDash(x.Error))
		pending = pending || x.Error != ""
	}
	if err := t.Flush(); err != nil {
		return err
	}
	if pending {
		return fmt.Errorf("some authorizations could not be cancelled yet; their holds stay until the chain shows them unusable")
	}
	return nil
}

// custodyField leaves the default (server) unsaid, as before co-signed
// wallets existed.
func custodyField(c string) string {
	if c == "server" {
		return ""
	}
	return c
}
