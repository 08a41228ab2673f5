package busctl

// ProgressLine renders the replay progress bar (for tests).
var ProgressLine = progressLine
