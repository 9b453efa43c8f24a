package sdk

import "github.com/purserhq/purser/api"

// The wire types of the API, declared once in package api and used by the
// server too; aliased here so that a program needs to import only sdk.
type (
	AgentInfo          = api.Agent
	Wallet             = api.Wallet
	Spend              = api.Spend
	Limits             = api.Limits
	Window             = api.Window
	RateWindow         = api.RateWindow
	Balance            = api.Balance
	Asset              = api.Asset
	MandateView        = api.MandateView
	AuditEvent         = api.AuditEvent
	AuditActor         = api.AuditActor
	AuditVerifyResult  = api.AuditVerifyResult
	AuditKey           = api.AuditKey
	Funding            = api.Funding
	Chains             = api.Chains
	Cancellation       = api.Cancellation
	Deployment         = api.Deployment
	AuthorizeRequest   = api.AuthorizeRequest
	CreateAgentRequest = api.CreateAgentRequest
	ResolveRequest     = api.ResolveRequest
	SettlementReport   = api.SettlementReport
	OwnerInvite        = api.OwnerInvite
	OwnerAccount       = api.Owner
	Passkey            = api.Passkey
	RecoveryBlob       = api.RecoveryBlob
)

// Spend statuses (docs/spend-lifecycle.md).
const (
	StatusPendingApproval = api.StatusPendingApproval
	StatusAuthorized      = api.StatusAuthorized
	StatusCaptured        = api.StatusCaptured
	StatusReleased        = api.StatusReleased
	StatusDenied          = api.StatusDenied
	StatusExpired         = api.StatusExpired
	StatusUnknown         = api.StatusUnknown
)
