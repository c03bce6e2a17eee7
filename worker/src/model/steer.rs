//! Which tokens a steering vector is applied to.

use tch::{Device, Kind, Tensor};

use super::error::ModelError;

/// What a token is, as far as steering is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRole {
    /// Left padding: never steered.
    Pad,
    /// System and user turns of the prompt.
    Prompt,
    /// Assistant-turn tokens already in the prompt, including the role header tokens.
    Assistant,
    /// Tokens produced by the model during generation.
    Generated,
}

/// Where steering applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SteerScope {
    /// Every real token.
    All,
    /// Assistant turns: `Assistant` and `Generated` tokens.
    AssistantTurns,
    /// Only generated tokens.
    Generated,
    /// Real tokens whose absolute position is at least this.
    FromIndex(i64),
}

impl SteerScope {
    pub fn includes(self, role: TokenRole, position: i64) -> bool {
        match (self, role) {
            (_, TokenRole::Pad) => false,
            (SteerScope::All, _) => true,
            (SteerScope::AssistantTurns, r) => {
                matches!(r, TokenRole::Assistant | TokenRole::Generated)
            }
            (SteerScope::Generated, r) => r == TokenRole::Generated,
            (SteerScope::FromIndex(i), _) => position >= i,
        }
    }
}

/// The `[B, T]` bool mask of the tokens of one forward call that `scope` steers, from each
/// token's role and absolute position (`roles[b][t]`, `positions[b][t]`).
pub fn steering_mask(
    scope: SteerScope,
    roles: &[Vec<TokenRole>],
    positions: &[Vec<i64>],
    device: Device,
) -> Result<Tensor, ModelError> {
    let b = roles.len();
    let t = roles.first().map_or(0, Vec::len);
    if positions.len() != b {
        return Err(ModelError::Input(format!(
            "steering mask: {b} role rows but {} position rows",
            positions.len()
        )));
    }
    let mut flat = Vec::with_capacity(b * t);
    for (row, (r, p)) in roles.iter().zip(positions).enumerate() {
        if r.len() != t || p.len() != t {
            return Err(ModelError::Input(format!(
                "steering mask: row {row} has {} roles and {} positions, expected {t}",
                r.len(),
                p.len()
            )));
        }
        flat.extend(r.iter().zip(p).map(|(&role, &pos)| scope.includes(role, pos)));
    }
    Ok(Tensor::from_slice(&flat).view([b as i64, t as i64]).to_kind(Kind::Bool).to_device(device))
}
