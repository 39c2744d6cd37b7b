# The two entry points the README opens with. Both work on a fresh machine:
# they install what they need (the wasm32-wasip2 target for the plugins)
# and build with the one profile the project uses (release).

.PHONY: serve test bench prerequisites

serve: prerequisites
	cargo run --release -p hearth -- serve

test: prerequisites
	cargo test --release --workspace

bench: prerequisites
	cargo bench -p hearth --bench store

prerequisites:
	@command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)"; exit 1; }
	@if command -v rustup >/dev/null; then \
		rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2; \
	fi
