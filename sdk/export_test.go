package sdk

// RunMain exposes runMain to the external tests.
var RunMain = runMain
