package busctl

// Exported for the external tests.
var LastN = lastN

type Window = window
