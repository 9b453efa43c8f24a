package spend

import (
	"encoding/hex"
	"strings"

	"golang.org/x/crypto/sha3"
)

// checksum returns the EIP-55 mixed-case form of a 0x address, so that
// one key always has one spelling in the store and the audit trail.
func checksum(addr string) string {
	lower := strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(addr, "0x"), "0X"))
	h := sha3.NewLegacyKeccak256()
	h.Write([]byte(lower))
	sum := hex.EncodeToString(h.Sum(nil))
	out := []byte("0x" + lower)
	for i := 0; i < len(lower); i++ {
		if c := lower[i]; c >= 'a' && c <= 'f' && sum[i] >= '8' {
			out[i+2] = c - 32
		}
	}
	return string(out)
}

// Checksum is checksum for transports that print addresses.
func Checksum(addr string) string { return checksum(addr) }
