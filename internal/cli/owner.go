package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/purserhq/purser/sdk"
)

func ownerCommand() *command {
	return &command{
		name:    "owner",
		summary: "invite and manage the owners who sign in to the portal with a passkey",
		sub: []*command{
			{name: "invite", args: "[--name NAME]", kind: kindOwner,
				summary: "print a one-time enrolment link (15 minutes) for a new owner, or a further device of an existing one",
				flags: func(fs *flag.FlagSet, o *opts) {
					fs.StringVar(&o.ownerName, "name", "owner", "the owner to create, or to add a passkey to")
				},
				run: ownerRun(nil, runOwnerInvite)},
			{name: "list", summary: "list owners and their passkeys", kind: kindOwner, run: ownerRun(nil, runOwnerList)},
			{name: "revoke", args: "NAME | --passkey CREDENTIAL_ID", kind: kindOwner,
				summary: "revoke an owner (their passkeys and sessions too), or one passkey",
				flags: func(fs *flag.FlagSet, o *opts) {
					fs.StringVar(&o.passkey, "passkey", "", "revoke only this passkey (its `CREDENTIAL_ID` from owner list)")
				},
				run: runOwnerRevoke},
			{name: "recovery-key", args: "--out FILE",
				summary: "make the owner's offline recovery key of co-signed (2of2) agents: private key to FILE (0600), public key to FILE.pub",
				flags: func(fs *flag.FlagSet, o *opts) {
					fs.StringVar(&o.out, "out", "", "write the private key to `FILE` and the public key to FILE.pub (never overwritten)")
				},
				run: runOwnerRecoveryKey},
		},
	}
}

func runOwnerInvite(ctx context.Context, e *env, o *opts, c *sdk.Owner, _ []string) error {
	inv, err := c.InviteOwner(ctx, o.ownerName)
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(e.stdio.Out, inv)
	}
	what := "a new passkey for " + inv.Name
	if inv.NewOwner {
		what = "new owner " + inv.Name
	}
	fmt.Fprintf(e.stdio.Out, "enrolment link for %s (works once, until %s):\n%s\n", what, inv.ExpiresAt.UTC().Format("2006-01-02T15:04:05Z"), inv.Link)
	return nil
}

func runOwnerList(ctx context.Context, e *env, o *opts, c *sdk.Owner, _ []string) error {
	l, err := c.Owners(ctx)
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(e.stdio.Out, map[string]any{"owners": l})
	}
	if len(l) == 0 {
		fmt.Fprintln(e.stdio.Out, "no owners yet: purser owner invite --name NAME")
		return nil
	}
	t := newTable(e.stdio.Out)
	fmt.Fprintln(t, "OWNER\tID\tSTATUS\tPASSKEY\tCREATED\tLAST USED\tPASSKEY STATUS")
	for _, ow := range l {
		st := "active"
		if ow.RevokedAt != nil {
			st = "revoked"
		}
		if len(ow.Passkeys) == 0 {
			fmt.Fprintf(t, "%s\t%s\t%s\t-\t-\t-\t-\n", ow.Name, ow.ID, st)
		}
		for _, p := range ow.Passkeys {
			used, pst := "-", "active"
			if p.LastUsedAt != nil {
				used = p.LastUsedAt.UTC().Format("2006-01-02T15:04:05Z")
			}
			if p.RevokedAt != nil {
				pst = "revoked"
			}
			fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ow.Name, ow.ID, st, p.CredentialID, p.CreatedAt.UTC().Format("2006-01-02T15:04:05Z"), used, pst)
		}
	}
	return t.Flush()
}

func runOwnerRevoke(ctx context.Context, e *env, o *opts, args []string) error {
	if o.passkey != "" {
		if err := wantArgs(o, args); err != nil {
			return err
		}
	} else if err := wantArgs(o, args, "NAME"); err != nil {
		return err
	}
	c, err := e.ownerClient(o)
	if err != nil {
		return err
	}
	if o.passkey != "" {
		p, err := c.RevokePasskey(ctx, o.passkey)
		if err != nil {
			return err
		}
		if o.json {
			return writeJSON(e.stdio.Out, p)
		}
		fmt.Fprintf(e.stdio.Out, "passkey %s of owner %s revoked; its sessions ended\n", p.CredentialID, p.OwnerID)
		return nil
	}
	ow, err := c.RevokeOwner(ctx, args[0])
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(e.stdio.Out, ow)
	}
	fmt.Fprintf(e.stdio.Out, "owner %s (%s) revoked, with %d passkey(s); their sessions ended\n", ow.Name, ow.ID, len(ow.Passkeys))
	return nil
}
