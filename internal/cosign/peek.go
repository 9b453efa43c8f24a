package cosign

// KeygenSessionIDOf returns the session id the agent chose for a key
// generation, read from the header of its first message. Key generation
// starts from no shared secret and both sides draw fresh randomness, so the
// server can take the id the agent picked (KeygenSessionID(agent id, random
// nonce)); the server's session then checks the whole message as usual.
// Only the header is read here: magic, version, kind, sequence 1, sender.
func KeygenSessionIDOf(m1 []byte) (SessionID, error) {
	if len(m1) < headerSize+macSize || len(m1) > MaxMessageBytes || string(m1[:4]) != frameMagic || m1[4] != frameVersion ||
		kind(m1[5]) != kindKeygen || m1[6] != 1 || Role(m1[7]) != RoleAgent {
		return SessionID{}, ErrMalformed
	}
	var sid SessionID
	copy(sid[:], m1[8:40])
	return sid, nil
}

// RefreshSessionIDOf returns the session id the agent chose for a share
// refresh (RefreshSessionID(agent id, public key, random nonce)), read from
// the header of its first message, as KeygenSessionIDOf does for key
// generation. The refresh's frames are MACed with a key derived from the
// chain key both shares hold, so a first message made without the agent's
// share is refused by the server's session right after.
func RefreshSessionIDOf(m1 []byte) (SessionID, error) {
	if len(m1) < headerSize+macSize || len(m1) > MaxMessageBytes || string(m1[:4]) != frameMagic || m1[4] != frameVersion ||
		kind(m1[5]) != kindRefresh || m1[6] != 1 || Role(m1[7]) != RoleAgent {
		return SessionID{}, ErrMalformed
	}
	var sid SessionID
	copy(sid[:], m1[8:40])
	return sid, nil
}
