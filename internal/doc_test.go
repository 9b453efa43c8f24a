// Package internal_test holds the meta-tests that keep the tree honest:
// dependency direction and package documentation.
package internal_test
