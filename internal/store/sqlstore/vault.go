package sqlstore

import (
	"context"
	"errors"

	"github.com/purserhq/purser/internal/spend"
)

// TODO(vault store helper): replaced by the real implementation.
var errVaultTODO = errors.New("sqlstore: vault tables are not implemented yet")

func (t *txn) CredentialCreate(context.Context, *spend.Credential) error { return errVaultTODO }
func (t *txn) CredentialGet(context.Context, string) (*spend.Credential, error) {
	return nil, errVaultTODO
}
func (t *txn) CredentialList(context.Context) ([]*spend.Credential, error) { return nil, errVaultTODO }
func (t *txn) CredentialUpdate(context.Context, *spend.Credential) error   { return errVaultTODO }
func (t *txn) CredentialDelete(context.Context, string) error              { return errVaultTODO }
func (t *txn) CredentialSecretAdd(context.Context, *spend.CredentialSecret) error {
	return errVaultTODO
}
func (t *txn) CredentialSecrets(context.Context, string) ([]*spend.CredentialSecret, error) {
	return nil, errVaultTODO
}
func (t *txn) CredentialSecretUpdate(context.Context, *spend.CredentialSecret) error {
	return errVaultTODO
}
func (t *txn) GrantPut(context.Context, *spend.Grant) error { return errVaultTODO }
func (t *txn) GrantGet(context.Context, string, string) (*spend.Grant, error) {
	return nil, errVaultTODO
}
func (t *txn) GrantList(context.Context, string, string) ([]*spend.Grant, error) {
	return nil, errVaultTODO
}
func (t *txn) GrantUpdate(context.Context, *spend.Grant) error         { return errVaultTODO }
func (t *txn) ToolPut(context.Context, *spend.Tool) error              { return errVaultTODO }
func (t *txn) ToolDelete(context.Context, string, string) error        { return errVaultTODO }
func (t *txn) ToolList(context.Context, string) ([]*spend.Tool, error) { return nil, errVaultTODO }
