//! What a 1017 says about itself on USB, per model: the facts observed with
//! the real board (see shared/DESIGN.md, "The 1017 at the USB boundary").

use crate::control::{Model, Plugged};

pub const VENDOR_PHIDGETS: u16 = 0x06C2;
pub const PRODUCT_1017_1: u16 = 0x0081;
pub const PRODUCT_1017_2: u16 = 0x0087;

pub const MANUFACTURER: &str = "Phidgets Inc.";
pub const PRODUCT: &str = "PhidgetInterfaceKit 0/0/8";
pub const SKU_1017_2: &str = "1017_2";

/// String descriptor indices.
pub const STRING_MANUFACTURER: u8 = 1;
pub const STRING_PRODUCT: u8 = 2;
/// libphidget22 reads the label (string 4) only when the serial is string 3.
pub const STRING_SERIAL: u8 = 3;
pub const STRING_LABEL: u8 = 4;
pub const STRING_SKU: u8 = 5;

/// One 8-byte report each way: relay mask in byte 0.
pub const REPORT_LEN: u8 = 8;

/// The device descriptor's fields, as `libusb_device_descriptor` holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceDescriptor {
    pub id_vendor: u16,
    pub id_product: u16,
    pub bcd_device: u16,
    pub max_packet_size0: u8,
}

pub fn device(board: &Plugged) -> DeviceDescriptor {
    match board.model {
        Model::Hid1017_1 => DeviceDescriptor {
            id_vendor: VENDOR_PHIDGETS,
            id_product: PRODUCT_1017_1,
            // HID Phidgets: version = high byte x 100 + low byte.
            bcd_device: (((board.version / 100) << 8) | (board.version % 100)) as u16,
            max_packet_size0: 8,
        },
        Model::Vendor1017_2 => DeviceDescriptor {
            id_vendor: VENDOR_PHIDGETS,
            id_product: PRODUCT_1017_2,
            // Vendor-protocol Phidgets: the version in BCD digits.
            bcd_device: bcd(board.version),
            max_packet_size0: 64,
        },
    }
}

fn bcd(value: u32) -> u16 {
    let digits = [
        value / 1000 % 10,
        value / 100 % 10,
        value / 10 % 10,
        value % 10,
    ];
    digits.iter().fold(0u16, |acc, d| (acc << 4) | *d as u16)
}

/// One endpoint of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub address: u8,
    /// 3: interrupt.
    pub attributes: u8,
    pub max_packet_size: u16,
    pub interval: u8,
    pub extra: Vec<u8>,
}

/// The active configuration: one interface, one alternate setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configuration {
    pub interface_class: u8,
    pub endpoints: Vec<Endpoint>,
    pub config_extra: Vec<u8>,
    pub interface_extra: Vec<u8>,
}

/// Phidgets' device descriptor (type 0x40): bcdVersion 1.10, the label and
/// SKU string indices, EP0's max packet size. Without it in the
/// configuration's extra bytes the library finds no 1017_2.
fn phidget_device_descriptor() -> Vec<u8> {
    vec![0x08, 0x40, 0x10, 0x01, STRING_LABEL, STRING_SKU, 0x40, 0x00]
}

pub fn configuration(model: Model) -> Configuration {
    match model {
        Model::Hid1017_1 => Configuration {
            interface_class: 0x03,
            endpoints: vec![
                Endpoint {
                    address: 0x81,
                    attributes: 3,
                    max_packet_size: 8,
                    interval: 8,
                    extra: Vec::new(),
                },
                Endpoint {
                    address: 0x01,
                    attributes: 3,
                    max_packet_size: 8,
                    interval: 8,
                    extra: Vec::new(),
                },
            ],
            // The HID class descriptor (report descriptor of this length).
            config_extra: Vec::new(),
            interface_extra: vec![
                0x09,
                0x21,
                0x11,
                0x01,
                0x00,
                0x01,
                0x22,
                HID_REPORT_DESCRIPTOR.len() as u8,
                0x00,
            ],
        },
        Model::Vendor1017_2 => Configuration {
            interface_class: 0xFF,
            endpoints: vec![Endpoint {
                address: 0x81,
                attributes: 3,
                max_packet_size: 8,
                interval: 8,
                // Phidgets' endpoint descriptor (type 0x42): 8-byte packets.
                extra: vec![0x04, 0x42, 0x08, 0x00],
            }],
            config_extra: phidget_device_descriptor(),
            interface_extra: phidget_device_descriptor(),
        },
    }
}

/// The 1017_1's HID report descriptor: a vendor collection with an 8-byte
/// input report and an 8-byte output report. The library finds the report
/// lengths by the Report Count item (0x95) two bytes before Input (0x81) and
/// Output (0x91).
pub const HID_REPORT_DESCRIPTOR: [u8; 27] = [
    0x06, 0xA0, 0xFF, // Usage Page (vendor)
    0x09, 0x01, // Usage
    0xA1, 0x01, // Collection (Application)
    0x09, 0x02, // Usage
    0x15, 0x00, // Logical Minimum 0
    0x26, 0xFF, 0x00, // Logical Maximum 255
    0x75, 0x08, // Report Size 8
    0x95, REPORT_LEN, // Report Count 8
    0x81, 0x02, // Input (Data, Var, Abs)
    0x09, 0x03, // Usage
    0x95, REPORT_LEN, // Report Count 8
    0x91, 0x02, // Output (Data, Var, Abs)
    0xC0, // End Collection
];

/// A string descriptor as the device sends it (length, type 3, UTF-16LE).
/// Index 0 is the language table (US English).
pub fn string(board: &Plugged, index: u8) -> Option<Vec<u8>> {
    let text = match index {
        0 => return Some(vec![4, 3, 0x09, 0x04]),
        STRING_MANUFACTURER => MANUFACTURER.to_owned(),
        STRING_PRODUCT => PRODUCT.to_owned(),
        STRING_SERIAL => board.serial.to_string(),
        // No label written to the board's flash.
        STRING_LABEL => String::new(),
        STRING_SKU if board.model == Model::Vendor1017_2 => SKU_1017_2.to_owned(),
        _ => return None,
    };
    let mut out = vec![0, 3];
    for unit in text.encode_utf16() {
        out.extend_from_slice(&unit.to_le_bytes());
    }
    out[0] = out.len() as u8;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board(model: Model, version: u32) -> Plugged {
        Plugged {
            model,
            serial: 424242,
            version,
        }
    }

    #[test]
    fn versions_are_encoded_the_way_the_library_decodes_them() {
        assert_eq!(device(&board(Model::Vendor1017_2, 200)).bcd_device, 0x0200);
        assert_eq!(device(&board(Model::Vendor1017_2, 215)).bcd_device, 0x0215);
        assert_eq!(device(&board(Model::Hid1017_1, 704)).bcd_device, 0x0704);
        assert_eq!(device(&board(Model::Hid1017_1, 215)).bcd_device, 0x020F);
    }

    #[test]
    fn the_report_descriptor_gives_eight_byte_reports_both_ways() {
        let d = HID_REPORT_DESCRIPTOR;
        let input = (10..d.len())
            .find(|&i| d[i] == 0x81 && d[i - 2] == 0x95)
            .expect("input");
        let output = (10..d.len())
            .find(|&i| d[i] == 0x91 && d[i - 2] == 0x95)
            .expect("output");
        assert_eq!((d[input - 1], d[output - 1]), (8, 8));
    }

    #[test]
    fn strings_are_utf16_with_their_length_first() {
        let s = string(&board(Model::Hid1017_1, 100), STRING_SERIAL).expect("serial");
        assert_eq!(s[0] as usize, s.len());
        assert_eq!(s[1], 3);
        assert_eq!(s.len(), 2 + 2 * 6);
        assert!(string(&board(Model::Hid1017_1, 100), STRING_SKU).is_none());
    }
}
