package middleware_test

import (
	"fmt"
	"net/http"

	"github.com/purserhq/purser/x402"
	"github.com/purserhq/purser/x402/middleware"
)

// A seller charging 0.01 USDC on Base Sepolia for GET /weather.
func Example() {
	charge, err := middleware.New(middleware.Config{
		Facilitator: &x402.FacilitatorClient{URL: "http://127.0.0.1:8403"}, // purser facilitator
		Routes: []middleware.Route{{
			Pattern: "GET /weather", Amount: "10000", // atomic units: 0.01 USDC
			Asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e", Network: "eip155:84532",
			PayTo:      "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
			EIP712Name: "USDC", EIP712Version: "2",
			Description: "Today's weather", MimeType: "application/json",
		}},
	})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /weather", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"forecast":"sunny","paid_by":%q}`, middleware.Payer(r.Context()))
	})
	_ = http.Handler(charge(mux)) // serve it with http.ListenAndServe
	fmt.Println("ready")
	// Output: ready
}
