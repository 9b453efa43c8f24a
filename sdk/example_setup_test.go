package sdk_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ethereum/go-ethereum/crypto"

	"github.com/purserhq/purser/internal/app"
	"github.com/purserhq/purser/internal/evm"
	"github.com/purserhq/purser/internal/facilitator"
	"github.com/purserhq/purser/sdk"
	"github.com/purserhq/purser/x402"
	"github.com/purserhq/purser/x402/middleware"
)

// The examples run against one dev market, started by the first example
// that needs it.
var (
	exampleOnce   sync.Once
	exampleMarket *devMarket
	exampleDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if exampleMarket != nil {
		exampleMarket.close()
	}
	if exampleDir != "" {
		os.RemoveAll(exampleDir)
	}
	os.Exit(code)
}

func startExampleEnv() {
	dir, err := os.MkdirTemp("", "purser-sdk-examples-*")
	must(err)
	exampleDir = dir
	exampleMarket = startDevMarket(filepath.Join(dir, "purser"))
}

// exampleServer returns the dev server's URL and owner token.
func exampleServer() (url, ownerToken string) {
	exampleOnce.Do(startExampleEnv)
	return exampleMarket.url, exampleMarket.token
}

// examplePaidAPI returns the base URL of the dev server's paid API.
func examplePaidAPI() string {
	exampleOnce.Do(startExampleEnv)
	return exampleMarket.paidAPI
}

// exampleKeyFile writes a fresh agent identity key file and returns its
// path.
func exampleKeyFile() string {
	exampleOnce.Do(startExampleEnv)
	dir, err := os.MkdirTemp(exampleDir, "agent-")
	must(err)
	path := filepath.Join(dir, "agent.key")
	_, err = sdk.GenerateKey(path)
	must(err)
	return path
}

// exampleAgent registers an agent named name with mandate on the dev
// server, funds its wallet with 1 dev USDC and returns the server's URL
// and the agent's key file.
func exampleAgent(name, mandate string) (url, keyFile string) {
	url, token := exampleServer()
	keyFile = exampleKeyFile()
	key, err := sdk.LoadKeyFile(keyFile)
	must(err)
	owner, err := sdk.NewOwner(url, token)
	must(err)
	ctx := context.Background()
	_, err = owner.CreateAgent(ctx, sdk.CreateAgentRequest{Name: name, IdentityAddress: key.Address(), Mandate: json.RawMessage(mandate)})
	must(err)
	_, err = owner.Fund(ctx, name, "1", "")
	must(err)
	return url, keyFile
}

func must(err error) {
	if err != nil {
		panic(fmt.Sprintf("example setup: %v", err))
	}
}

// devMarket is Purser with its embedded dev chain (as `purser demo` runs
// it), Purser's facilitator on that chain, and a paid API selling
// GET /weather for 0.01 USDC, all on loopback in this process.
type devMarket struct {
	url, token, paidAPI string
	stop                []func()
}

// startDevMarket starts a dev market keeping Purser's data in dataDir; it
// panics if anything fails to start (examples have no *testing.T).
func startDevMarket(dataDir string) *devMarket {
	ctx := context.Background()
	d := &devMarket{}
	srv, err := app.Start(ctx, app.Config{DataDir: dataDir, Listen: "127.0.0.1:0", DevChain: true})
	must(err)
	d.stop = append(d.stop, func() { srv.Shutdown(context.Background()) })
	d.url = "http://" + srv.Addr()
	tok, err := os.ReadFile(filepath.Join(dataDir, "owner.token"))
	must(err)
	d.token = strings.TrimSpace(string(tok))

	dev := srv.DevChain()
	gas, err := crypto.GenerateKey()
	must(err)
	_, err = dev.FundETH(ctx, crypto.PubkeyToAddress(gas.PublicKey), big.NewInt(1e18))
	must(err)
	fac, err := facilitator.New(facilitator.Config{Networks: map[string]facilitator.Network{
		dev.Network(): {Client: dev.Client(), Relayer: evm.NewRelayer(dev.Client(), evm.KeySigner(gas))}}})
	must(err)
	facURL := d.serve(fac.Handler())

	sellerKey, err := crypto.GenerateKey()
	must(err)
	mw, err := middleware.New(middleware.Config{Facilitator: &x402.FacilitatorClient{URL: facURL},
		Routes: []middleware.Route{{Pattern: "GET /weather", Amount: "10000", Asset: dev.Token().Hex(), Network: dev.Network(),
			PayTo: crypto.PubkeyToAddress(sellerKey.PublicKey).Hex(), EIP712Name: "USD Coin", EIP712Version: "2",
			Description: "today's weather", MimeType: "text/plain"}}})
	must(err)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /weather", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "sunny, 21°C") })
	d.paidAPI = d.serve(mw(mux))
	return d
}

// serve serves h on a free loopback port until close.
func (d *devMarket) serve(h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	s := &http.Server{Handler: h}
	go s.Serve(ln)
	d.stop = append(d.stop, func() { s.Close() })
	return "http://" + ln.Addr().String()
}

// close stops what startDevMarket started, last first.
func (d *devMarket) close() {
	for i := len(d.stop) - 1; i >= 0; i-- {
		d.stop[i]()
	}
}

// exampleAskApproval registers an agent named name and has it ask for a
// custom spend of amount, above what it may spend without approval.
func exampleAskApproval(server, name, amount, memo string) {
	_, keyFile := exampleAgent(name, `{"per_tx_auto":"0.10","per_tx_max":"1.00","daily":"5.00"}`)
	key, err := sdk.LoadKeyFile(keyFile)
	must(err)
	agent, err := sdk.NewAgent(server, key)
	must(err)
	_, err = agent.Authorize(context.Background(), sdk.AuthorizeRequest{Rail: "custom", Payee: "0x000000000000000000000000000000000000dEaD",
		Amount: amount, Memo: memo})
	var pending *sdk.ApprovalRequiredError
	if !errors.As(err, &pending) {
		panic(fmt.Sprintf("example setup: %s's spend of %s: %v; want it waiting for approval", name, amount, err))
	}
}
