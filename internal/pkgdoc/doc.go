// Package pkgdoc holds repository-wide tests of the code's shape: every package has a doc
// comment, and the daemon and the trainer only meet through the plugin contract.
package pkgdoc
