package sdk

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/cosign"
)

// Share refresh of a co-signed (2of2) wallet, on the owner's machine (the
// agent side runs there, as for key generation): both shares are
// re-randomised and the address stays. The server keeps its old share
// active until the new pair has produced a check signature, so a refresh
// that fails or is never finished changes nothing.

// CosignRefresh is a refresh whose new shares have signed their check but
// are not active yet: write Key's share into the agent's new key file, then
// Finish. Until Finish succeeds the old key file keeps working.
type CosignRefresh struct {
	Key   *CosignKey // the new agent share (a secret), same address and public key
	Epoch int64      // the epoch the new shares take

	o   *Owner
	ref string
	sig cosign.Signature
}

// CosignRefresh runs the agent's side of a share refresh of agent ref's
// co-signed wallet (POST /v1/agents/{ref}/cosign/refresh, five messages)
// with its current share (the key file's cosign-share, MarshalBinary
// form), then the check signature with the new shares (…/refresh/commit)
// over cosign.RefreshCheck(agent id, epoch, refresh session id). It checks the new share keeps
// the wallet's address and that the check signature recovers to it.
func (o *Owner) CosignRefresh(ctx context.Context, ref string, share []byte) (*CosignRefresh, error) {
	old, err := cosign.UnmarshalShare(share)
	if err != nil || old.Role() != cosign.RoleAgent {
		return nil, errors.New("sdk: share refresh: the key file's share is not an agent share")
	}
	ag, err := o.Agent(ctx, ref)
	if err != nil {
		return nil, err
	}
	var wallet string
	for _, w := range ag.Wallets {
		wallet = w.Address
	}
	if ag.Custody != api.Custody2of2 || !strings.EqualFold(wallet, old.Address().Hex()) {
		return nil, fmt.Errorf("sdk: share refresh: the key file's share is not agent %s's co-signed wallet", ag.Name)
	}
	nonce := make([]byte, 32)
	rand.Read(nonce)
	sid := cosign.RefreshSessionID(ag.ID, old.PublicKey(), nonce)
	ks, err := cosign.NewRefresh(old, sid)
	if err != nil {
		return nil, fmt.Errorf("sdk: share refresh: %w", err)
	}
	msg, err := ks.Start()
	if err != nil {
		return nil, fmt.Errorf("sdk: share refresh: %w", err)
	}
	base := "/v1/agents/" + escape(ag.ID) + "/cosign/refresh"
	var epoch int64
	for i := 0; ; i++ {
		if i == 3 { // m1, m3, m5
			return nil, errors.New("sdk: share refresh: the server did not finish after the fifth message")
		}
		var resp api.KeygenResponse
		if _, err := o.c.do(ctx, http.MethodPost, base, nil, api.KeygenRequest{Message: base64.StdEncoding.EncodeToString(msg)}, authOwner, &resp); err != nil {
			return nil, fmt.Errorf("sdk: share refresh: %w", err)
		}
		if resp.Done {
			if !ks.Done() || resp.Epoch < 2 || !strings.EqualFold(resp.Address, old.Address().Hex()) {
				return nil, errors.New("sdk: share refresh: the server's last answer does not match the agent side")
			}
			epoch = resp.Epoch
			break
		}
		in, err := base64.StdEncoding.DecodeString(resp.Message)
		if err != nil || len(in) == 0 {
			return nil, errors.New("sdk: share refresh: the server's message is not base64")
		}
		if msg, err = ks.Handle(in); err != nil {
			return nil, fmt.Errorf("sdk: share refresh: %w", err)
		}
		if msg == nil {
			return nil, errors.New("sdk: share refresh: the agent side has nothing more to send, but the server is not done")
		}
	}
	fresh, err := ks.Share() // checks the public key is unchanged
	if err != nil {
		return nil, fmt.Errorf("sdk: share refresh: %w", err)
	}
	// The check: a signature with the new pair, which the server needs
	// before it switches to its new share.
	s, err := cosign.NewAgentSigner(fresh, cosign.RefreshCheck(ag.ID, epoch, sid))
	if err != nil {
		return nil, fmt.Errorf("sdk: share refresh check: %w", err)
	}
	m1, err := s.Start()
	if err != nil {
		return nil, fmt.Errorf("sdk: share refresh check: %w", err)
	}
	var resp api.KeygenResponse
	if _, err := o.c.do(ctx, http.MethodPost, base+"/commit", nil, api.KeygenRequest{Message: base64.StdEncoding.EncodeToString(m1)}, authOwner, &resp); err != nil {
		return nil, fmt.Errorf("sdk: share refresh check: %w", err)
	}
	m2, err := base64.StdEncoding.DecodeString(resp.Message)
	if err != nil || len(m2) == 0 {
		return nil, errors.New("sdk: share refresh check: the server's message is not base64")
	}
	if _, err := s.Handle(m2); err != nil {
		return nil, fmt.Errorf("sdk: share refresh check: the server's part: %w", err)
	}
	sig, err := s.Signature() // verified against the wallet's key
	if err != nil {
		return nil, fmt.Errorf("sdk: share refresh check: %w", err)
	}
	return &CosignRefresh{
		Key:   &CosignKey{AgentID: ag.ID, Address: fresh.Address().Hex(), PublicKey: "0x" + hex.EncodeToString(fresh.PublicKey()), share: fresh},
		Epoch: epoch, o: o, ref: ag.ID, sig: sig,
	}, nil
}

// Finish makes the new shares the active ones (POST
// /v1/agents/{ref}/cosign/refresh/finish); the old agent share stops
// working with the server. recovery is the new share's recovery blob
// (Key.RecoveryBlob), required when the agent had one. Retried once, with
// the same signature, on a transport error.
func (r *CosignRefresh) Finish(ctx context.Context, recovery *api.RecoveryBlob) error {
	body := api.RefreshFinishRequest{Signature: "0x" + hex.EncodeToString(r.sig[:]), Recovery: recovery}
	path := "/v1/agents/" + escape(r.ref) + "/cosign/refresh/finish"
	var out api.RefreshFinishResponse
	_, err := r.o.c.do(ctx, http.MethodPost, path, nil, body, authOwner, &out)
	if err != nil && retryable(ctx, err) {
		_, err = r.o.c.do(ctx, http.MethodPost, path, nil, body, authOwner, &out)
	}
	if err != nil {
		return fmt.Errorf("sdk: share refresh: finish: %w", err)
	}
	if out.Epoch != r.Epoch || !strings.EqualFold(out.Address, r.Key.Address) {
		return errors.New("sdk: share refresh: the server activated another epoch or address")
	}
	return nil
}
