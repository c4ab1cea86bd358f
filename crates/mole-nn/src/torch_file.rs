//! Reads PyTorch files without Python: a plain `torch.save(state_dict)` (`.pt`, `.pth`) and a
//! PyTorch Lightning checkpoint (`.ckpt`: the state dict under `state_dict`, omegaconf
//! hyper-parameters under `hyper_parameters`).
//!
//! A PyTorch file is a zip archive (entries stored, not compressed) holding `data.pkl`, a pickle
//! (protocol 2) that describes the objects, and one raw little-endian file per tensor storage.
//! The pickle is run on a small stack machine that builds a generic value tree: the few classes
//! that matter here (`OrderedDict`, `dict`, `defaultdict`, `torch._utils._rebuild_tensor_v2`,
//! `_rebuild_parameter`, the `*Storage` types) are understood, any other class becomes an opaque
//! object that keeps its arguments and state (so omegaconf's `DictConfig` can still be read as
//! data). Burn's own PyTorch reader (`burn-store`) stops at the first class it does not know,
//! which every Lightning checkpoint has (`collections.defaultdict`, omegaconf), hence this reader.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::rc::Rc;

use crate::state::{f16_to_f32, HostTensor, StateDict};
use crate::NnError;

/// A value built by the pickle machine.
#[derive(Debug, Clone)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// Raw bytes (never needed here: only their place on the stack).
    Bytes,
    List(Rc<RefCell<Vec<Value>>>),
    Tuple(Rc<Vec<Value>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    /// `module.name`
    Global(Rc<(String, String)>),
    /// An instance of a class this reader does not interpret.
    Object(Rc<RefCell<Object>>),
    /// A persistent id (`BINPERSID`): a tensor storage reference.
    PersistentId(Rc<Value>),
    /// A tensor: storage key, element type, offset, shape, strides (in elements).
    Tensor(Rc<TensorRef>),
}

/// What an opaque object keeps: its `BUILD` state and its `SETITEM`/`APPEND` items.
#[derive(Debug, Default)]
struct Object {
    state: Option<Value>,
    items: Vec<(Value, Value)>,
}

#[derive(Debug)]
struct TensorRef {
    storage_key: String,
    storage_type: String,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

impl Value {
    fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }
    fn items(&self) -> Option<Vec<Value>> {
        match self {
            Value::Tuple(t) => Some(t.as_ref().clone()),
            Value::List(l) => Some(l.borrow().clone()),
            _ => None,
        }
    }
    /// The value under string key `key` of a dict (or of an opaque object's items).
    fn get(&self, key: &str) -> Option<Value> {
        let find = |pairs: &[(Value, Value)]| {
            pairs
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v.clone())
        };
        match self {
            Value::Dict(d) => find(&d.borrow()),
            Value::Object(o) => find(&o.borrow().items),
            _ => None,
        }
    }
}

/// Errors name the file and what is missing or unexpected.
fn error(path: &Path, why: impl Into<String>) -> NnError {
    NnError::Parse {
        path: path.display().to_string(),
        why: why.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// zip (stored entries only, as torch.save writes them)

struct ZipEntry {
    data_offset: usize,
    size: usize,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The entries of a zip archive by name (central directory; zip64 sizes and offsets read).
fn zip_entries(bytes: &[u8]) -> Option<HashMap<String, ZipEntry>> {
    // end of central directory: the last occurrence of its signature
    let search_from = bytes.len().saturating_sub(22 + 65_535);
    let eocd = (search_from..bytes.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(bytes, i) == Some(0x0605_4b50))?;
    let mut entries_total = u64::from(u16_at(bytes, eocd + 10)?);
    let mut cd_offset = u64::from(u32_at(bytes, eocd + 16)?);
    if cd_offset == 0xFFFF_FFFF || entries_total == 0xFFFF {
        // zip64: the locator sits just before the end record
        let locator = eocd.checked_sub(20)?;
        if u32_at(bytes, locator)? != 0x0706_4b50 {
            return None;
        }
        let record = usize::try_from(u64_at(bytes, locator + 8)?).ok()?;
        if u32_at(bytes, record)? != 0x0606_4b50 {
            return None;
        }
        entries_total = u64_at(bytes, record + 32)?;
        cd_offset = u64_at(bytes, record + 48)?;
    }
    let mut at = usize::try_from(cd_offset).ok()?;
    let mut entries = HashMap::new();
    for _ in 0..entries_total {
        if u32_at(bytes, at)? != 0x0201_4b50 {
            return None;
        }
        let method = u16_at(bytes, at + 10)?;
        let mut size = u64::from(u32_at(bytes, at + 20)?);
        let name_len = usize::from(u16_at(bytes, at + 28)?);
        let extra_len = usize::from(u16_at(bytes, at + 30)?);
        let comment_len = usize::from(u16_at(bytes, at + 32)?);
        let mut local = u64::from(u32_at(bytes, at + 42)?);
        let name = String::from_utf8_lossy(bytes.get(at + 46..at + 46 + name_len)?).into_owned();
        // zip64 extended information: the 0xFFFFFFFF fields, in order
        let extra = bytes.get(at + 46 + name_len..at + 46 + name_len + extra_len)?;
        let mut e = 0;
        while e + 4 <= extra.len() {
            let id = u16_at(extra, e)?;
            let len = usize::from(u16_at(extra, e + 2)?);
            if id == 0x0001 {
                let mut f = e + 4;
                let uncompressed = u64::from(u32_at(bytes, at + 24)?);
                if uncompressed == 0xFFFF_FFFF {
                    f += 8;
                }
                if size == 0xFFFF_FFFF {
                    size = u64_at(extra, f)?;
                    f += 8;
                }
                if local == 0xFFFF_FFFF {
                    local = u64_at(extra, f)?;
                }
            }
            e += 4 + len;
        }
        at += 46 + name_len + extra_len + comment_len;
        if method != 0 {
            // compressed entries are not written by torch.save; skip them
            continue;
        }
        let local = usize::try_from(local).ok()?;
        if u32_at(bytes, local)? != 0x0403_4b50 {
            return None;
        }
        let data_offset = local
            + 30
            + usize::from(u16_at(bytes, local + 26)?)
            + usize::from(u16_at(bytes, local + 28)?);
        let size = usize::try_from(size).ok()?;
        bytes.get(data_offset..data_offset + size)?;
        entries.insert(name, ZipEntry { data_offset, size });
    }
    Some(entries)
}

// ---------------------------------------------------------------------------------------------
// pickle

struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

impl Machine<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let s = self
            .bytes
            .get(self.pos..self.pos + n)
            .ok_or("the pickle ends early")?;
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn line(&mut self) -> Result<String, String> {
        let rest = &self.bytes[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("unterminated text in the pickle")?;
        let s = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(s)
    }
    fn pop(&mut self) -> Result<Value, String> {
        self.stack
            .pop()
            .ok_or_else(|| "pickle stack underflow".into())
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let mark = self.marks.pop().ok_or("pickle MARK missing")?;
        if mark > self.stack.len() {
            return Err("pickle MARK beyond the stack".into());
        }
        Ok(self.stack.split_off(mark))
    }
    fn string(&mut self, n: usize) -> Result<Value, String> {
        Ok(Value::Str(
            String::from_utf8_lossy(self.take(n)?).into_owned(),
        ))
    }

    fn run(mut self) -> Result<Value, String> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.take(8)?; // FRAME
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'}' => self.stack.push(Value::Dict(Rc::default())),
                b']' => self.stack.push(Value::List(Rc::default())),
                b')' => self.stack.push(Value::Tuple(Rc::default())),
                0x8f => self.stack.push(Value::List(Rc::default())), // EMPTY_SET
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(i64::from(v)));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(i64::from(v)));
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(i64::from(v)));
                }
                0x8a => {
                    // LONG1: little-endian two's complement
                    let n = usize::from(self.u8()?);
                    let b = self.take(n)?;
                    let mut v: i64 = 0;
                    for (i, &byte) in b.iter().enumerate().take(8) {
                        v |= i64::from(byte) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.stack.push(Value::Int(v));
                }
                b'I' => {
                    let s = self.line()?;
                    let v = match s.as_str() {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        _ => Value::Int(s.trim().parse().map_err(|_| "bad INT in the pickle")?),
                    };
                    self.stack.push(v);
                }
                b'G' => {
                    let b = self.take(8)?;
                    let v = f64::from_be_bytes(b.try_into().map_err(|_| "bad BINFLOAT")?);
                    self.stack.push(Value::Float(v));
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                0x8c => {
                    let n = usize::from(self.u8()?);
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                b'U' => {
                    let n = usize::from(self.u8()?);
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    self.take(n)?;
                    self.stack.push(Value::Bytes);
                }
                b'C' => {
                    let n = usize::from(self.u8()?);
                    self.take(n)?;
                    self.stack.push(Value::Bytes);
                }
                b'q' => {
                    let i = u32::from(self.u8()?);
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?;
                }
                0x94 => self.memo_put(self.memo.len() as u32)?,
                b'h' => {
                    let i = u32::from(self.u8()?);
                    self.memo_get(i)?;
                }
                b'j' => {
                    let i = self.u32()?;
                    self.memo_get(i)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(Rc::new((module, name))));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(m), Some(n)) = (module.as_str(), name.as_str()) else {
                        return Err("STACK_GLOBAL without strings".into());
                    };
                    self.stack
                        .push(Value::Global(Rc::new((m.into(), n.into()))));
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return Err("pickle stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(Rc::new(RefCell::new(items))));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = items
                        .chunks(2)
                        .filter(|c| c.len() == 2)
                        .map(|c| (c[0].clone(), c[1].clone()))
                        .collect();
                    self.stack.push(Value::Dict(Rc::new(RefCell::new(pairs))));
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = reduce(callable, args)?;
                    self.stack.push(v);
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = reduce(callable, args)?;
                    self.stack.push(v);
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.stack.last().ok_or("BUILD on an empty stack")?;
                    if let Value::Object(o) = target {
                        o.borrow_mut().state = Some(state);
                    }
                    // BUILD on a dict (OrderedDict's `_metadata`) sets an attribute: dropped
                }
                b'Q' => {
                    let id = self.pop()?;
                    self.stack.push(Value::PersistentId(Rc::new(id)));
                }
                other => {
                    return Err(format!(
                        "unsupported pickle opcode 0x{other:02x} at byte {}",
                        self.pos - 1
                    ))
                }
            }
        }
    }

    /// BINPUT / LONG_BINPUT / MEMOIZE: remember the top of the stack as entry `i`.
    fn memo_put(&mut self, i: u32) -> Result<(), String> {
        let top = self
            .stack
            .last()
            .ok_or("pickle memo store on an empty stack")?
            .clone();
        self.memo.insert(i, top);
        Ok(())
    }

    /// BINGET / LONG_BINGET: push memo entry `i`.
    fn memo_get(&mut self, i: u32) -> Result<(), String> {
        let v = self
            .memo
            .get(&i)
            .ok_or_else(|| format!("pickle memo entry {i} fetched before it was stored"))?
            .clone();
        self.stack.push(v);
        Ok(())
    }

    fn append(&mut self, items: Vec<Value>) -> Result<(), String> {
        match self.stack.last() {
            Some(Value::List(l)) => l.borrow_mut().extend(items),
            Some(Value::Object(o)) => {
                let mut o = o.borrow_mut();
                let start = o.items.len() as i64;
                for (i, v) in items.into_iter().enumerate() {
                    o.items.push((Value::Int(start + i as i64), v));
                }
            }
            _ => return Err("APPEND to something that is not a list".into()),
        }
        Ok(())
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<(), String> {
        let pairs = items
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].clone(), c[1].clone()));
        match self.stack.last() {
            Some(Value::Dict(d)) => d.borrow_mut().extend(pairs),
            Some(Value::Object(o)) => o.borrow_mut().items.extend(pairs),
            _ => return Err("SETITEM on something that is not a dict".into()),
        }
        Ok(())
    }
}

/// `callable(*args)` for the callables this reader understands; anything else becomes an
/// opaque object.
fn reduce(callable: Value, args: Value) -> Result<Value, String> {
    let Value::Global(class) = &callable else {
        return Ok(Value::Object(Rc::default()));
    };
    let args = args.items().unwrap_or_default();
    let (module, name) = (class.0.as_str(), class.1.as_str());
    Ok(match (module, name) {
        ("collections", "OrderedDict" | "defaultdict") | ("builtins" | "__builtin__", "dict") => {
            let pairs = match args.first() {
                Some(Value::Dict(d)) if name != "defaultdict" => d.borrow().clone(),
                _ => Vec::new(),
            };
            Value::Dict(Rc::new(RefCell::new(pairs)))
        }
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {
            let storage = match args.first() {
                Some(Value::PersistentId(id)) => id.items().unwrap_or_default(),
                _ => return Err("a tensor without a storage reference".into()),
            };
            // ('storage', storage type, key, location, numel)
            let storage_type = match storage.get(1) {
                Some(Value::Global(g)) => g.1.clone(),
                _ => return Err("a tensor storage without a type".into()),
            };
            let storage_key = storage
                .get(2)
                .and_then(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .or(v.as_int().map(|i| i.to_string()))
                })
                .ok_or("a tensor storage without a key")?;
            let offset = args.get(1).and_then(Value::as_int).unwrap_or(0) as usize;
            let dims = |v: Option<&Value>| -> Vec<usize> {
                v.and_then(Value::items)
                    .unwrap_or_default()
                    .iter()
                    .map(|d| d.as_int().unwrap_or(0) as usize)
                    .collect()
            };
            Value::Tensor(Rc::new(TensorRef {
                storage_key,
                storage_type,
                offset,
                shape: dims(args.get(2)),
                stride: dims(args.get(3)),
            }))
        }
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            args.into_iter().next().unwrap_or(Value::None)
        }
        _ => Value::Object(Rc::default()),
    })
}

// ---------------------------------------------------------------------------------------------
// files

/// An opened PyTorch file: its archive and the unpickled object tree.
pub struct TorchFile {
    bytes: Vec<u8>,
    entries: HashMap<String, ZipEntry>,
    /// Folder prefix of the archive's entries (`archive/`, or the file's stem).
    prefix: String,
    root: Value,
    path: std::path::PathBuf,
}

impl TorchFile {
    /// Reads and unpickles `path` (the tensors' data stay in the file until asked for).
    pub fn open(path: &Path) -> Result<Self, NnError> {
        let bytes = std::fs::read(path).map_err(|e| NnError::Io {
            path: path.display().to_string(),
            error: e,
        })?;
        let entries = zip_entries(&bytes).ok_or_else(|| {
            error(
                path,
                "not a PyTorch zip file (torch.save's format since PyTorch 1.6; older pickled \
                 files are not supported)",
            )
        })?;
        let pkl = entries
            .keys()
            .find(|k| k.ends_with("/data.pkl") || k.as_str() == "data.pkl")
            .cloned()
            .ok_or_else(|| error(path, "the archive has no data.pkl: not a torch.save file"))?;
        let prefix = pkl.trim_end_matches("data.pkl").to_string();
        let entry = &entries[&pkl];
        let machine = Machine {
            bytes: &bytes[entry.data_offset..entry.data_offset + entry.size],
            pos: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
        };
        let root = machine.run().map_err(|why| error(path, why))?;
        Ok(Self {
            bytes,
            entries,
            prefix,
            root,
            path: path.to_path_buf(),
        })
    }

    /// Whether the top level is a Lightning checkpoint (has `state_dict`).
    pub fn is_lightning_checkpoint(&self) -> bool {
        self.root.get("state_dict").is_some()
    }

    /// The state dict: the top-level dict of a plain `torch.save(state_dict)`, or
    /// `state_dict` of a Lightning checkpoint; float tensors of any width converted to `f32`.
    pub fn state_dict(&self) -> Result<StateDict, NnError> {
        let dict = self
            .root
            .get("state_dict")
            .unwrap_or_else(|| self.root.clone());
        let Value::Dict(pairs) = &dict else {
            return Err(error(
                &self.path,
                "no state dict: the file holds neither a dict of tensors nor a `state_dict` entry",
            ));
        };
        let mut tensors = BTreeMap::new();
        for (key, value) in pairs.borrow().iter() {
            let (Some(name), Value::Tensor(t)) = (key.as_str(), value) else {
                continue;
            };
            tensors.insert(name.to_string(), self.tensor(name, t)?);
        }
        if tensors.is_empty() {
            return Err(error(&self.path, "the state dict holds no tensors"));
        }
        Ok(StateDict {
            tensors,
            metadata: BTreeMap::new(),
        })
    }

    fn tensor(&self, name: &str, t: &TensorRef) -> Result<HostTensor, NnError> {
        let key = format!("{}data/{}", self.prefix, t.storage_key);
        let entry = self.entries.get(&key).ok_or_else(|| {
            error(
                &self.path,
                format!("{name}: storage {key} is missing from the archive"),
            )
        })?;
        let raw = &self.bytes[entry.data_offset..entry.data_offset + entry.size];
        let (width, convert): (usize, fn(&[u8]) -> f32) = match t.storage_type.as_str() {
            "FloatStorage" => (4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            "DoubleStorage" => (8, |b| {
                f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            }),
            "HalfStorage" => (2, |b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))),
            "BFloat16Storage" => (2, |b| {
                f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)
            }),
            other => {
                return Err(error(
                    &self.path,
                    format!("{name}: {other} tensors are not weights this model can use"),
                ))
            }
        };
        let numel: usize = t.shape.iter().product();
        // element index of each position, from the strides (contiguous or not)
        let mut data = Vec::with_capacity(numel);
        let mut index = vec![0usize; t.shape.len()];
        for _ in 0..numel {
            let at = t.offset
                + index
                    .iter()
                    .zip(&t.stride)
                    .map(|(i, s)| i * s)
                    .sum::<usize>();
            let bytes = raw.get(at * width..(at + 1) * width).ok_or_else(|| {
                error(
                    &self.path,
                    format!("{name}: storage {key} is shorter than the tensor"),
                )
            })?;
            data.push(convert(bytes));
            for d in (0..index.len()).rev() {
                index[d] += 1;
                if index[d] < t.shape[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        Ok(HostTensor {
            shape: t.shape.clone(),
            data,
        })
    }

    /// A Lightning checkpoint's `hyper_parameters` as JSON (omegaconf containers read as
    /// plain dicts and lists, interpolations left as their `${...}` text); `None` when absent.
    pub fn hyper_parameters(&self) -> Option<serde_json::Value> {
        self.root.get("hyper_parameters").map(|v| to_json(&v, 0))
    }
}

/// Generic JSON view of a value; omegaconf nodes are unwrapped (`_content`, `_val`).
fn to_json(v: &Value, depth: usize) -> serde_json::Value {
    use serde_json::Value as J;
    if depth > 64 {
        return J::Null;
    }
    match v {
        Value::None => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::Str(s) => J::String(s.clone()),
        Value::Bytes | Value::Global(_) | Value::PersistentId(_) | Value::Tensor(_) => J::Null,
        Value::List(l) => J::Array(l.borrow().iter().map(|x| to_json(x, depth + 1)).collect()),
        Value::Tuple(t) => J::Array(t.iter().map(|x| to_json(x, depth + 1)).collect()),
        Value::Dict(d) => J::Object(
            d.borrow()
                .iter()
                .filter_map(|(k, x)| {
                    let key = k
                        .as_str()
                        .map(str::to_string)
                        .or_else(|| k.as_int().map(|i| i.to_string()))?;
                    Some((key, to_json(x, depth + 1)))
                })
                .collect(),
        ),
        Value::Object(o) => {
            let o = o.borrow();
            if let Some(state) = &o.state {
                if let Some(content) = state.get("_content") {
                    return to_json(&content, depth + 1);
                }
                if let Some(val) = state.get("_val") {
                    return to_json(&val, depth + 1);
                }
            }
            if !o.items.is_empty() {
                return to_json(
                    &Value::Dict(Rc::new(RefCell::new(o.items.clone()))),
                    depth + 1,
                );
            }
            J::Null
        }
    }
}
