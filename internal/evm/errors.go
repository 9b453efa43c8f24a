package evm

import (
	"encoding/hex"
	"errors"
	"strings"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/rpc"
)

// RevertError is a call or gas estimate that the EVM reverted. Its text is
// "execution reverted: <reason>", the form x402 facilitators match their
// reason-code regexes against.
type RevertError struct {
	Reason string // decoded Error(string) reason; may be empty
	Data   []byte // raw revert data, if the node returned it
}

func (e *RevertError) Error() string {
	if e.Reason == "" {
		return "execution reverted"
	}
	return "execution reverted: " + e.Reason
}

// IsRevert reports whether err is (or wraps) a *RevertError: the chain
// refused the call, as opposed to a transport or node failure.
func IsRevert(err error) bool {
	var re *RevertError
	return errors.As(err, &re)
}

// RevertReason returns the revert string carried by err, or "".
func RevertReason(err error) string {
	var re *RevertError
	if errors.As(err, &re) {
		return re.Reason
	}
	return ""
}

// asRevert turns a node's revert error into a *RevertError and leaves other
// errors alone. Nodes differ: geth and anvil send the revert data in the
// JSON-RPC error's data field; some only put "execution reverted" in the text.
func asRevert(err error) error {
	if err == nil {
		return nil
	}
	var de rpc.DataError
	if errors.As(err, &de) {
		if s, ok := de.ErrorData().(string); ok && strings.HasPrefix(s, "0x") {
			if data, herr := hex.DecodeString(s[2:]); herr == nil {
				re := &RevertError{Data: data}
				if reason, uerr := abi.UnpackRevert(data); uerr == nil {
					re.Reason = reason
				} else {
					re.Reason = reasonFromText(err.Error())
				}
				return re
			}
		}
	}
	if msg := err.Error(); strings.Contains(msg, "execution reverted") {
		return &RevertError{Reason: reasonFromText(msg)}
	}
	return err
}

func reasonFromText(msg string) string {
	_, after, ok := strings.Cut(msg, "execution reverted")
	if !ok {
		return ""
	}
	return strings.TrimSpace(strings.TrimPrefix(after, ":"))
}
