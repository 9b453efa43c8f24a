package cli

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"

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
