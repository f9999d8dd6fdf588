/// pagestat's version, the one place it is written: `pagestat --version` prints it. Raise it
/// with each release (there is no release tag yet, so no build-time `git describe`).
let pagestatVersion = "0.9.0"
