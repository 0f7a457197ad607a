// Package datasets manages the datasets directory that uploads land in
// (docs/compatibility.md §10):
// creating folders, saving uploaded files, extracting zip archives and listing folders.
//
// Every file operation goes through an os.Root opened on the datasets directory, so no
// path, symlink or ".." can reach outside it (docs/security.md rows U3, U6); only the
// admin setting allow_dataset_paths_outside_dir widens that to the whole filesystem.
// Files are written under a staging directory and renamed (or hard-linked, to never
// overwrite) into place, so readers never see a half-written file, and a zip archive is
// checked in full (names, modes, sizes, ratios, depth) before any byte is extracted.
// The package knows no HTTP; the API maps its sentinel errors to statuses.
package datasets
