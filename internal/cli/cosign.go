package cli

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/sdk"
)

// Co-signed (2of2) wallets on the CLI: key generation at agent create, the
// owner's offline recovery key, and recovery of a lost agent key file.

const (
	recoveryPrivateField = "x25519-private"
	recoveryPublicField  = "x25519-public"
)

// runOwnerRecoveryKey makes the owner's X25519 recovery key pair: the
// private key to FILE (0600, never overwritten; keep it offline), the
// public key to FILE.pub (give it to agent create --recovery-key).
func runOwnerRecoveryKey(_ context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args); err != nil {
		return err
	}
	if o.out == "" {
		return usagef(o.path, "--out FILE is required: the private recovery key is written there, the public key to FILE.pub")
	}
	pub := o.out + ".pub"
	for _, p := range []string{o.out, pub} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s already exists; refusing to overwrite a recovery key", p)
		}
	}
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	priv := []byte(recoveryPrivateField + ": " + base64.StdEncoding.EncodeToString(k.Bytes()) + "\n")
	defer clear(priv)
	if err := writeNewFile(o.out, priv, 0o600); err != nil {
		return err
	}
	pubLine := recoveryPublicField + ": " + base64.StdEncoding.EncodeToString(k.PublicKey().Bytes()) + "\n"
	if err := writeNewFile(pub, []byte(pubLine), 0o644); err != nil {
		os.Remove(o.out)
		return err
	}
	if o.json {
		return writeJSON(e.stdio.Out, map[string]string{"private_key_file": o.out, "public_key_file": pub,
			"public_key": base64.StdEncoding.EncodeToString(k.PublicKey().Bytes())})
	}
	fmt.Fprintf(e.stdio.Out, "recovery key written to %s (keep it offline: with the server it can recover every 2of2 agent created with it)\npublic key written to %s (give it to agent create --recovery-key)\n", o.out, pub)
	return nil
}

func writeNewFile(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// readRecoveryKey reads one line "field: base64 of 32 bytes" from path.
// Errors never quote the file.
func readRecoveryKey(path, field string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	defer clear(raw)
	name, val, ok := bytes.Cut(bytes.TrimSpace(raw), []byte(":"))
	switch {
	case ok && string(name) == recoveryPrivateField && field == recoveryPublicField:
		return nil, fmt.Errorf("%s is the private recovery key; give its public key (%s.pub) and keep the private key offline", path, path)
	case !ok || string(name) != field:
		return nil, fmt.Errorf("%s is not a recovery key file (purser owner recovery-key --out FILE writes one: want a %q line)", path, field)
	}
	k, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(val)))
	if err != nil || len(k) != 32 {
		return nil, fmt.Errorf("%s: the %s line is not 32 bytes of base64", path, field)
	}
	return k, nil
}

// cosignKeygen runs key generation for a just-created 2of2 agent, writes
// the share into its key file and stores the recovery blob.
func cosignKeygen(ctx context.Context, c *sdk.Owner, agentID, keyFile string, recoveryPub []byte) error {
	k, err := c.CosignKeygen(ctx, agentID)
	if err != nil {
		return err
	}
	if err := k.AddToKeyFile(keyFile); err != nil {
		return err
	}
	if recoveryPub == nil {
		return nil
	}
	blob, err := k.RecoveryBlob(recoveryPub)
	if err != nil {
		return err
	}
	if err := c.SetCosignRecovery(ctx, agentID, blob); err != nil {
		return fmt.Errorf("store the recovery copy of the share: %w", err)
	}
	return nil
}

// runAgentRecover restores a 2of2 agent whose key file was lost: the
// share is decrypted on this machine from the recovery blob the server
// keeps, the agent gets a new identity key (the lost file's identity key
// stops working), and both go into a new key file. The wallet and its
// funds stay where they are; the server alone could do none of this.
func runAgentRecover(ctx context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args, "NAME"); err != nil {
		return err
	}
	if o.recoveryKey == "" {
		return usagef(o.path, "--recovery-key FILE is required: the private recovery key of owner recovery-key")
	}
	if o.keyOut == "" {
		return usagef(o.path, "--key-out FILE is required: the agent's new key file (new identity key and the recovered share)")
	}
	if _, err := os.Lstat(o.keyOut); err == nil {
		return fmt.Errorf("%s already exists; refusing to overwrite a key file", o.keyOut)
	}
	priv, err := readRecoveryKey(o.recoveryKey, recoveryPrivateField)
	if err != nil {
		return err
	}
	defer clear(priv)
	c, err := e.ownerClient(o)
	if err != nil {
		return err
	}
	a, err := c.Agent(ctx, args[0])
	if err != nil {
		return err
	}
	var wallet string
	for _, w := range a.Wallets {
		wallet = w.Address
	}
	if a.Custody != "2of2" || wallet == "" {
		return fmt.Errorf("agent %s has no co-signed (2of2) wallet to recover", a.Name)
	}
	blob, err := c.CosignRecovery(ctx, a.ID)
	if err != nil {
		return err
	}
	share, err := sdk.OpenRecoveryBlob(blob, a.ID, wallet, priv)
	if err != nil {
		return err
	}
	defer clear(share)
	key, err := agentauth.GenerateKey()
	if err != nil {
		return err
	}
	// The key file first: if the rotation's answer is lost, the new
	// identity key is not.
	if err := agentauth.WriteKeyFileShare(o.keyOut, key, share); err != nil {
		return err
	}
	if a, err = c.RotateKey(ctx, a.ID, agentauth.Address(key).Hex()); err != nil {
		dropKeyFile(e, o.keyOut, err)
		return err
	}
	if o.json {
		return writeRaw(e.stdio.Out, a.Raw)
	}
	fmt.Fprintf(e.stdio.Out, "agent %s recovered: wallet %s, new identity address %s\nkey file (identity key and co-signing share) written to %s; the lost key file's identity key no longer works\n",
		a.Name, wallet, a.IdentityAddress, o.keyOut)
	return nil
}

// runCosignRotateKey rotates a 2of2 agent's identity key and refreshes both
// wallet shares (the address stays). Order, so that no step can leave the
// agent without a working key file: the refresh and its check signature
// (nothing changes on the server yet), then NEW_FILE with the new identity
// key and the new share, the identity rotation, and last the switch to the
// new shares. If the switch is refused, NEW_FILE gets the old share back:
// the agent keeps working with its new identity and the old pair.
func runCosignRotateKey(ctx context.Context, e *env, o *opts, c *sdk.Owner, a *sdk.AgentInfo) error {
	if _, err := os.Lstat(o.keyOut); err == nil {
		return fmt.Errorf("%s already exists; refusing to overwrite a key file", o.keyOut)
	}
	path := o.keyFile
	if path == "" {
		path = o.agentKey
	}
	if path == "" {
		path = e.getenv("PURSER_AGENT_KEY")
	}
	if path == "" {
		return usagef(o.path, "agent %s co-signs its wallet: pass its current key file with --key-file FILE (or PURSER_AGENT_KEY), whose share is refreshed", a.Name)
	}
	var recoveryPub []byte
	if o.recoveryKey != "" {
		var err error
		if recoveryPub, err = readRecoveryKey(o.recoveryKey, recoveryPublicField); err != nil {
			return err
		}
	} else if _, err := c.CosignRecovery(ctx, a.ID); err == nil {
		return usagef(o.path, "agent %s has a recovery copy of its share, which the refresh makes useless: pass --recovery-key FILE.pub to encrypt the new share to the owner's recovery key", a.Name)
	} else if !sdk.IsCode(err, "cosign_not_ready") {
		return err
	}
	_, old, err := agentauth.ReadKeyFileShare(path)
	if err != nil {
		return err
	}
	if len(old) == 0 {
		return fmt.Errorf("%s holds no co-signing share (agent %s is 2of2: give its key file)", path, a.Name)
	}
	defer clear(old)
	r, err := c.CosignRefresh(ctx, a.ID, old)
	if err != nil {
		return err
	}
	var blob *api.RecoveryBlob
	if recoveryPub != nil {
		if blob, err = r.Key.RecoveryBlob(recoveryPub); err != nil {
			return err
		}
	}
	key, err := agentauth.GenerateKey()
	if err != nil {
		return err
	}
	if err := r.Key.WriteKeyFile(o.keyOut, key); err != nil {
		return err
	}
	info, err := c.RotateKey(ctx, a.ID, agentauth.Address(key).Hex())
	if err != nil {
		dropKeyFile(e, o.keyOut, err)
		return err
	}
	if err := r.Finish(ctx, blob); err != nil {
		var ae *sdk.Error
		if errors.As(err, &ae) {
			if werr := agentauth.WriteKeyFileShare(o.keyOut, key, old); werr != nil {
				return fmt.Errorf("%w; and restoring the old share into %s failed: %v", err, o.keyOut, werr)
			}
			fmt.Fprintf(e.stdio.Err, "note: the identity key was rotated but the shares were not refreshed: %s holds the new identity key and the old share, which still works\n", o.keyOut)
			return err
		}
		fmt.Fprintf(e.stdio.Err, "note: no answer from the server on the share switch; %s holds the new share, the old share is passed on in case the switch did not happen\n", o.keyOut)
		return err
	}
	if o.json {
		return writeRaw(e.stdio.Out, info.Raw)
	}
	fmt.Fprintf(e.stdio.Out, "agent %s now has identity address %s; wallet %s unchanged, both shares refreshed (epoch %d)\nnew key file (identity key and share) written to %s; the old key file no longer works\n",
		info.Name, info.IdentityAddress, r.Key.Address, r.Epoch, o.keyOut)
	return nil
}
