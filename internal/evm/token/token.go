package token

import (
	_ "embed"
	"encoding/hex"
	"strings"
)

var (
	//go:embed DevUSD.bin
	creationHex string
	//go:embed DevUSD.deployed.bin
	runtimeHex string
)

// Bytecode returns DevUSD's creation code; append ABI-encoded constructor
// arguments (DevUSD().PackConstructor) to deploy it.
func Bytecode() []byte { return mustHex(creationHex) }

// RuntimeBytecode returns DevUSD's deployed code, for placing the token at a
// fixed address (genesis alloc, anvil_setCode) before calling initialize.
func RuntimeBytecode() []byte { return mustHex(runtimeHex) }

// Binding returns the shared ABI binding (pack/unpack helpers) for the token.
// It is stateless and safe for concurrent use.
func Binding() *DevUSD { return binding }

var binding = NewDevUSD()

// The artifacts are committed and checked by the tests, so a decode failure is
// a broken build, not a runtime condition.
func mustHex(s string) []byte {
	b, err := hex.DecodeString(strings.TrimPrefix(strings.TrimSpace(s), "0x"))
	if err != nil {
		panic("token: corrupt embedded bytecode: " + err.Error())
	}
	return b
}
