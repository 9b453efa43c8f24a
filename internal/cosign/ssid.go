package cosign

import (
	"encoding/binary"
	"io"

	"github.com/taurusgroup/multi-party-sig/pkg/hash"
	"github.com/taurusgroup/multi-party-sig/pkg/party"
)

// libSSID recomputes the library's session hash for a doerner session with
// our session id (internal/round.NewSession: session id, protocol id, group
// name, sorted party ids, threshold 1). The library checks it on every
// incoming message, and the server must know it before the agent's first
// message arrives. The agent checks this value against the header of its own
// first library message, so a library change that breaks it fails loudly.
func libSSID(sid SessionID) []byte {
	h := hash.New()
	_ = h.WriteAny(
		&hash.BytesWithDomain{TheDomain: "Session ID", Bytes: sid[:]},
		&hash.BytesWithDomain{TheDomain: "Protocol ID", Bytes: []byte("doerner/keygen")},
		&hash.BytesWithDomain{TheDomain: "Group Name", Bytes: []byte(group.Name())},
		party.NewIDSlice([]party.ID{agentPartyID, serverPartyID}),
		threshold(1),
	)
	return h.Sum()
}

// threshold writes like the library's internal types.ThresholdWrapper.
type threshold uint32

func (t threshold) WriteTo(w io.Writer) (int64, error) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(t))
	n, err := w.Write(b[:])
	return int64(n), err
}

func (threshold) Domain() string { return "Threshold" }
