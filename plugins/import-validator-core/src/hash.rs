/// FNV-1a over an element name: the hash of the generated element tables.
/// build.rs includes this file too, so both sides hash alike.
pub(crate) fn hash(name: &[u8]) -> u32 {
    name.iter().fold(0x811c_9dc5, |h: u32, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}
