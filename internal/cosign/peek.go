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
