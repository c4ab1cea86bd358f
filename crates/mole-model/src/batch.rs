//! A featurised batch moved onto a device.

use burn::tensor::{backend::Backend, Bool, Int, Tensor, TensorData};
use mole_featurize::Batch;

/// Model inputs of one padded batch.
#[derive(Debug, Clone)]
pub struct BatchTensors<B: Backend> {
    /// `[batch, seq]` token ids, CLS first, PAD = 0.
    pub input_ids: Tensor<B, 2, Int>,
    /// `[batch, seq]` true for CLS and atom tokens.
    pub input_mask: Tensor<B, 2, Bool>,
    /// `[batch, seq, seq]` distance + 1; 0 for CLS, padding and other fragments.
    pub relative_pos: Tensor<B, 3, Int>,
    /// Largest relative position in the batch (host-side), so the encoder can use only the
    /// relative-table rows the batch needs.
    pub max_relative_pos: usize,
}

impl<B: Backend> BatchTensors<B> {
    pub fn from_batch(batch: &Batch, device: &B::Device) -> Self {
        let (b, n) = (batch.batch_size, batch.seq_len);
        Self {
            input_ids: Tensor::from_data(TensorData::new(batch.input_ids.clone(), [b, n]), device),
            input_mask: Tensor::from_data(
                TensorData::new(batch.input_mask.clone(), [b, n]),
                device,
            ),
            relative_pos: Tensor::from_data(
                TensorData::new(batch.relative_pos.clone(), [b, n, n]),
                device,
            ),
            max_relative_pos: batch.relative_pos.iter().copied().max().unwrap_or(0).max(0) as usize,
        }
    }

    pub fn batch_size(&self) -> usize {
        self.input_ids.dims()[0]
    }

    pub fn seq_len(&self) -> usize {
        self.input_ids.dims()[1]
    }

    pub fn to_device(self, device: &B::Device) -> Self {
        Self {
            input_ids: self.input_ids.to_device(device),
            input_mask: self.input_mask.to_device(device),
            relative_pos: self.relative_pos.to_device(device),
            max_relative_pos: self.max_relative_pos,
        }
    }
}
