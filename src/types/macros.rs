//! The two macros every definition in `types` is made from.

/// Declares an open newtype over a wire type with named constants (rustls'
/// `enum_builder!` idiom): values the spec does not name still survive a round trip and
/// print in hex. A type marked `closed` has a fixed set of choices: a value outside them is
/// refused in strict mode and kept with a warning in lenient mode.
macro_rules! restricted {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident($inner:ty) : $spec:literal $(, $closed:ident)? {
            $( $(#[$cmeta:meta])* $cname:ident = $cval:expr => $label:literal ),* $(,)?
        }
    ) => {
        restricted! { @define $(#[$meta])* $vis struct $name($inner) : $spec {
            $( $(#[$cmeta])* $cname = $cval => $label ),*
        } }

        impl $crate::types::Placeholder for $name {
            fn placeholder() -> Self {
                Self(<$inner as $crate::types::Placeholder>::placeholder())
            }
        }

        impl $crate::types::Codec for $name {
            const TYPE: &'static str = $spec;
            const WIRE: &'static str = <$inner as $crate::types::Codec>::WIRE;
            fn read_opt(r: &mut $crate::codec::Reader<'_>) -> Result<Option<Self>, $crate::codec::DecodeError> {
                let pos = r.position();
                let v = <$inner as $crate::types::Codec>::read_opt(r)?.map(Self);
                $( restricted!(@$closed r, pos, v, $spec); )?
                let _ = pos;
                Ok(v)
            }
            fn encoded_len(&self) -> usize {
                $crate::types::Codec::encoded_len(&self.0)
            }
            fn encode(&self, out: &mut Vec<u8>) {
                $crate::types::Codec::encode(&self.0, out)
            }
        }
    };
    // A closed type: its values are its choices (part 1, 1.2).
    (@closed $r:ident, $pos:ident, $v:ident, $spec:literal) => {
        if let Some(x) = &$v {
            if x.name().is_none() {
                $r.deviation(
                    $pos,
                    $crate::codec::ErrorKind::InvalidValue {
                        what: $spec,
                        reason: format!("{:?} is not one of its choices", x.0),
                    },
                    "kept the value",
                )?;
            }
        }
    };
    (
        @define
        $(#[$meta:meta])*
        $vis:vis struct $name:ident($inner:ty) : $spec:literal {
            $( $(#[$cmeta:meta])* $cname:ident = $cval:expr => $label:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis struct $name(pub $inner);

        impl $name {
            $( $(#[$cmeta])* pub const $cname: Self = Self($cval); )*

            /// The spec's name for this value, if it has one.
            pub fn name(&self) -> Option<&'static str> {
                $( if *self == Self::$cname { return Some($label); } )*
                None
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{}({:?})", stringify!($name), self.0),
                }
            }
        }

    };
}

/// Declares a composite type (part 1, 1.4): a described list whose fields have names,
/// types, and one of three kinds:
/// - `mandatory`: the struct field is `T`; absent or null is an error;
/// - `optional`: the struct field is `Option<T>`;
/// - `default(expr)`: the struct field is `T`; null reads as the default, and (compact
///   layout) a value equal to the default is written as null.
///
/// The macro writes the struct, its decoder (descriptor as ulong code or symbol name; extra
/// fields refused in strict mode and skipped with a warning in lenient mode) and its encoder
/// (compact or every field, see [`Layout`](crate::types::Layout)). It does not derive
/// `Default`: a type with no mandatory field can derive it where the spec's defaults match
/// Rust's, and the others get a `new` constructor.
macro_rules! composite {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident : $label:literal, $symbol:literal, $code:literal {
            $(
                $(#[$fmeta:meta])*
                $field:ident : $fty:ty => $wire:literal, $kind:ident $(($default:expr))?
            );* $(;)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        $vis struct $name {
            $( $(#[$fmeta])* pub $field: composite!(@ty $kind $fty), )*
        }

        impl $crate::types::Composite for $name {
            const NAME: &'static str = $label;
            const SYMBOL: &'static str = $symbol;
            const CODE: u64 = $code;
            const FIELDS: &'static [&'static str] = &[$($wire),*];
            const FIELD_TYPES: &'static [&'static str] =
                &[$(<$fty as $crate::types::Codec>::WIRE),*];

            #[allow(unused_assignments, unused_mut, unused_variables)]
            fn read_fields(r: &mut $crate::codec::Reader<'_>, count: u32) -> Result<Self, $crate::codec::DecodeError> {
                // Read into the value itself, each field starting as what an absent one
                // means (a placeholder for a mandatory one): an error part way drops
                // one value, not each field read so far (a drop for every field at every
                // exit, which was most of the decoders' code in the browser build).
                let start = r.position();
                let mut v = Self { $($field: composite!(@init $kind $fty $(, $default)?),)* };
                let mut idx: u32 = 0;
                $(
                    if idx < count {
                        idx += 1;
                        composite!(@store $kind r start $label $wire v.$field, <$fty as $crate::types::Codec>::read_opt(r)?);
                    } else {
                        composite!(@absent $kind r start $label $wire);
                    }
                )*
                $crate::types::skip_extra_fields(r, $label, count, idx as usize)?;
                Ok(v)
            }

            #[allow(unused_mut, unused_assignments, unused_variables)]
            fn write_fields(&self, layout: $crate::types::Layout, out: &mut Vec<u8>) -> usize {
                // Compact: trailing nulls are taken back off once the last field is written.
                let every = layout == $crate::types::Layout::AllFields;
                let (mut count, mut end, mut i) = (0, out.len(), 0);
                $(
                    i += 1;
                    if !composite!(@write $kind layout self.$field out $($default)?) || every {
                        count = i;
                        end = out.len();
                    }
                )*
                out.truncate(end);
                count
            }
        }

        impl $crate::types::Codec for $name {
            const TYPE: &'static str = $label;
            fn read_opt(r: &mut $crate::codec::Reader<'_>) -> Result<Option<Self>, $crate::codec::DecodeError> {
                $crate::types::read_composite(r)
            }
            fn encoded_len(&self) -> usize {
                $crate::types::Composite::encoded_len_with(self, $crate::types::Layout::Compact)
            }
            fn encode(&self, out: &mut Vec<u8>) {
                $crate::types::Composite::encode_with(self, $crate::types::Layout::Compact, out)
            }
        }
    };

    (@ty mandatory $t:ty) => { $t };
    (@ty optional $t:ty) => { Option<$t> };
    (@ty default $t:ty) => { $t };

    (@init mandatory $t:ty) => { <$t as $crate::types::Placeholder>::placeholder() };
    (@init optional $t:ty) => { None };
    (@init default $t:ty, $d:expr) => { $d };

    (@store mandatory $r:ident $start:ident $label:literal $wire:literal $v:ident . $f:ident, $read:expr) => {
        match $read {
            Some(x) => $v.$f = x,
            None => return Err($crate::types::missing_field($r, $start, $label, $wire)),
        }
    };
    (@store optional $r:ident $start:ident $label:literal $wire:literal $v:ident . $f:ident, $read:expr) => {
        $v.$f = $read
    };
    (@store default $r:ident $start:ident $label:literal $wire:literal $v:ident . $f:ident, $read:expr) => {
        if let Some(x) = $read {
            $v.$f = x;
        }
    };

    (@absent mandatory $r:ident $start:ident $label:literal $wire:literal) => {
        return Err($crate::types::missing_field($r, $start, $label, $wire))
    };
    (@absent $kind:ident $r:ident $start:ident $label:literal $wire:literal) => {};

    // Writes the field; `true` when it was written as a null that may be left out.
    (@write mandatory $layout:ident $s:ident . $f:ident $out:ident) => {{
        $crate::types::Codec::encode(&$s.$f, $out);
        false
    }};
    (@write optional $layout:ident $s:ident . $f:ident $out:ident) => {
        match &$s.$f {
            Some(v) => {
                $crate::types::Codec::encode(v, $out);
                false
            }
            None => {
                $out.push($crate::codec::format::NULL);
                true
            }
        }
    };
    (@write default $layout:ident $s:ident . $f:ident $out:ident $d:expr) => {
        if $layout == $crate::types::Layout::Compact && $s.$f == $d {
            $out.push($crate::codec::format::NULL);
            true
        } else {
            $crate::types::Codec::encode(&$s.$f, $out);
            false
        }
    };
}
