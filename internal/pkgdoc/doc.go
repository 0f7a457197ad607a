// Package pkgdoc holds repository-wide tests of the code's shape: every package has a doc
// comment, the daemon and the trainer only meet through the plugin contract, and comments
// cite only files the repository holds (the design of record in docs/, whose cited
// sections and rows must exist).
package pkgdoc
