# The two entry points the README opens with. Both work on a fresh machine:
# they install what they need (the wasm32-wasip2 target for the plugins)
# and build with the one profile the project uses (release).

.PHONY: serve test bench prerequisites azurite

serve: prerequisites
	cargo run --release -p hearth -- serve

# `plugins/` and `examples/plugins/` are workspaces of their own (excluded
# from this one), so their natively testable crates are tested by name. The
# target directory is the one host/build.rs builds them into (the wasm
# artifacts live under wasm32-wasip2/ there, these under release/).
# The end-to-end tests run last so that the run closes on their summary.
test: prerequisites azurite
	cargo test --release --manifest-path plugins/Cargo.toml -p fhir-search -p import-validator-core --target-dir target/wasm
	cargo test --release --manifest-path examples/plugins/Cargo.toml -p deid-sink --target-dir target/wasm
	cargo test --release --workspace

bench: prerequisites azurite
	cargo bench -p hearth --bench store
	cargo bench -p hearth --bench export
	cargo bench -p hearth --bench plugins
	cargo bench -p hearth --bench import

prerequisites:
	@command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)"; exit 1; }
	@if command -v rustup >/dev/null; then \
		rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2; \
	fi

# Azurite, the Azure Storage emulator the Blob tests and benchmarks run,
# pinned by tools/azurite/package-lock.json (needs node and npm).
azurite:
	@test -f tools/azurite/node_modules/azurite/dist/src/blob/main.js || { \
		command -v npm >/dev/null || { echo "node and npm are required for the Azure Blob tests"; exit 1; }; \
		npm ci --prefix tools/azurite --no-audit --no-fund; }
