package ui

import "embed"

// Assets holds the browser's side: assets/app.js and assets/app.css.
//
//go:embed assets/app.js assets/app.css
var Assets embed.FS
