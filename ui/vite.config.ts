import { defineConfig } from "vitest/config";

// Run from the repository root as `vite ui` (see package.json); the Tauri shell embeds dist/.
export default defineConfig({
  clearScreen: false,
  server: { port: 5173, strictPort: true },
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // WebKitGTK 2.40+, WebView2 and current Safari all run ES2022.
    target: "es2022",
    // One small bundle: no inline scripts or styles, which the CSP forbids.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
  test: { environment: "node", include: ["src/**/*.test.ts"] },
});
