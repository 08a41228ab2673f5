package busctl

// ActionLine renders an action's progress bar (for tests).
var ActionLine = actionLine
