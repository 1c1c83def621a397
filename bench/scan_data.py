"""The benchmark's DICOM objects, built with pydicom: realistic CT and MR headers, random pixel data.

Pure pydicom (no Django, no AWS). Object i of n lands in quarter q = 4i // n of the prefix, so `<prefix>q0/`
holds N/4 objects; 50 instances make a series, 4 series a study, and every third study is MR. The transfer
syntax and the size of the private blocks are chosen per series, as one scanner writes them. The header length
of each object (the offset of its pixel data element) is known exactly, so the benchmark can compare bytes
read with it.
"""

from __future__ import annotations

import io
import random
import struct
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
)

UID_ROOT = "1.2.826.0.1.3680043.8.498."
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
# Per series, as a scanner meets them in a hospital's archive: mostly native, some compressed, a little big endian.
TRANSFER_SYNTAXES = [
    (ExplicitVRLittleEndian, 0.55),
    (ImplicitVRLittleEndian, 0.20),
    (JPEG2000Lossless, 0.10),
    (JPEGLosslessSV1, 0.10),
    (ExplicitVRBigEndian, 0.05),
]
ENCAPSULATED = {JPEG2000Lossless, JPEGLosslessSV1}
# Share of series whose vendor writes a large private block in group 0009, before the patient and study
# attributes: those headers cannot be read in one first read of a few KiB.
LARGE_PRIVATE_SHARE = 0.03
INSTANCES_PER_SERIES = 50
SERIES_PER_STUDY = 4


@dataclass(frozen=True)
class Planned:
    key: str
    header_length: int
    size: int
    modality: str
    transfer_syntax: str
    large_private: bool


def _uid(*parts: int) -> str:
    return UID_ROOT + ".".join(str(p) for p in parts)


def _layout(i: int, n: int) -> tuple[int, int, int, int]:
    """(quarter, study, series number, instance number) of object i of n."""
    quarter = i * 4 // n
    study = i // (INSTANCES_PER_SERIES * SERIES_PER_STUDY)
    series = (i // INSTANCES_PER_SERIES) % SERIES_PER_STUDY + 1
    return quarter, study, series, i % INSTANCES_PER_SERIES + 1


def key_for(prefix: str, i: int, n: int) -> str:
    quarter, study, series, _instance = _layout(i, n)
    return f"{prefix}q{quarter}/study-{study:05d}/series-{series}/{i:06d}.dcm"


def _filler(size: int, seed: int) -> bytes:
    """Private blob content: printable text, as Siemens CSA and GE protocol blocks mostly are."""
    text = f"### ASCCONV sAdjData.uiAdjFreqMode = 0x{seed:x} ; sKSpace.lBaseResolution = 256 ;\n".encode()
    return (text * (size // len(text) + 1))[: size - size % 2]


def build_header(i: int, n: int) -> tuple[Dataset, str, str, bool]:
    """The dataset of object i (no pixel data), its transfer syntax, modality and whether it has a large private block."""
    _quarter, study, series_no, instance = _layout(i, n)
    series_id = i // INSTANCES_PER_SERIES
    per_series = random.Random(series_id)
    per_object = random.Random(i)
    syntaxes, weights = zip(*TRANSFER_SYNTAXES, strict=True)
    transfer_syntax = per_series.choices(syntaxes, weights)[0]
    large_private = per_series.random() < LARGE_PRIVATE_SHARE
    mr = study % 3 == 2
    sop_class = MR_STORAGE if mr else CT_STORAGE
    sop = _uid(12, i + 1)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    ds = Dataset()
    ds.file_meta = meta
    slice_location = -120.0 + 2.5 * instance
    common: dict[str, Any] = {
        "SpecificCharacterSet": "ISO_IR 100",
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
        "InstanceCreationDate": "20240312",
        "InstanceCreationTime": f"0931{instance % 60:02d}",
        "SOPClassUID": sop_class,
        "SOPInstanceUID": sop,
        "StudyDate": "20240312",
        "SeriesDate": "20240312",
        "AcquisitionDate": "20240312",
        "ContentDate": "20240312",
        "StudyTime": "092512",
        "SeriesTime": f"0930{series_no:02d}",
        "AcquisitionTime": f"0931{instance % 60:02d}.{per_object.randint(0, 999999):06d}",
        "ContentTime": f"0931{instance % 60:02d}",
        "AccessionNumber": f"ACC{study:07d}",
        "Modality": "MR" if mr else "CT",
        "Manufacturer": "SIEMENS" if mr else "GE MEDICAL SYSTEMS",
        "InstitutionName": "St Elsewhere General Hospital",
        "InstitutionAddress": "1 Hospital Road, Springfield",
        "ReferringPhysicianName": "Kildare^James^^Dr",
        "StationName": "MRC40123" if mr else "CTAWP7342",
        "StudyDescription": ("MR BRAIN W/O" if mr else "CT HEAD W/O CONTRAST")
        # One study in seven has its description spelled two ways, as real archives do.
        + (" " if study % 7 == 0 and instance % 2 else ""),
        "SeriesDescription": f"{'T2 TSE AX' if mr else 'AXIAL 2.5MM'} {series_no}",
        "OperatorsName": "Tech^Alex",
        "ManufacturerModelName": "Prisma" if mr else "Revolution CT",
        "PatientName": f"Doe^Jane^{study}",
        "PatientID": f"PAT{study:07d}",
        "PatientBirthDate": "19700101",
        "PatientSex": "F" if study % 2 else "M",
        "PatientAge": "054Y",
        "PatientWeight": "72.5",
        "BodyPartExamined": "HEAD",
        "SliceThickness": "2.5",
        "DeviceSerialNumber": "40123" if mr else "7342",
        "SoftwareVersions": "syngo MR XA30" if mr else "revo_ct_22BC.41",
        "ProtocolName": "t2_tse_tra" if mr else "5.1 ROUTINE HEAD",
        "PatientPosition": "HFS",
        "StudyInstanceUID": _uid(10, study + 1),
        "SeriesInstanceUID": _uid(11, series_id + 1),
        "StudyID": str(study + 1),
        "SeriesNumber": series_no,
        "AcquisitionNumber": 1,
        "InstanceNumber": instance,
        "ImagePositionPatient": [-125.0, -125.0, slice_location],
        "ImageOrientationPatient": [1, 0, 0, 0, 1, 0],
        "FrameOfReferenceUID": _uid(13, study + 1),
        "PositionReferenceIndicator": "",
        "SliceLocation": slice_location,
        "SamplesPerPixel": 1,
        "PhotometricInterpretation": "MONOCHROME2",
        "PixelSpacing": [0.488281, 0.488281],
        "BitsAllocated": 16,
        "BitsStored": 12 if mr else 16,
        "HighBit": 11 if mr else 15,
        "PixelRepresentation": 0 if mr else 1,
        "WindowCenter": 40 if not mr else 600,
        "WindowWidth": 80 if not mr else 1200,
        "PerformedProcedureStepStartDate": "20240312",
        "PerformedProcedureStepStartTime": "092500",
        "PerformedProcedureStepID": f"PPS{study}",
        "PerformedProcedureStepDescription": "MR BRAIN" if mr else "CT HEAD",
    }
    if mr:
        common.update(
            {
                "ScanningSequence": "SE",
                "SequenceVariant": ["SK", "SP", "OSP"],
                "ScanOptions": ["PFP", "FS"],
                "MRAcquisitionType": "2D",
                "SequenceName": "*tse2d1_16",
                "AngioFlag": "N",
                "RepetitionTime": "5000.0",
                "EchoTime": "96.0",
                "NumberOfAverages": "1.0",
                "ImagingFrequency": "123.2",
                "ImagedNucleus": "1H",
                "EchoNumbers": "1",
                "MagneticFieldStrength": "3.0",
                "SpacingBetweenSlices": "2.5",
                "NumberOfPhaseEncodingSteps": "256",
                "EchoTrainLength": "16",
                "PercentSampling": "100.0",
                "PercentPhaseFieldOfView": "100.0",
                "PixelBandwidth": "220.0",
                "TransmitCoilName": "Body",
                "AcquisitionMatrix": [0, 320, 256, 0],
                "InPlanePhaseEncodingDirection": "ROW",
                "FlipAngle": "150.0",
                "VariableFlipAngleFlag": "N",
                "SAR": "0.9",
                "dBdt": "0.0",
            }
        )
    else:
        common.update(
            {
                "KVP": "120",
                "DataCollectionDiameter": "500.0",
                "ReconstructionDiameter": "250.0",
                "DistanceSourceToDetector": "1085.6",
                "DistanceSourceToPatient": "625.6",
                "GantryDetectorTilt": "0.0",
                "TableHeight": "160.0",
                "RotationDirection": "CW",
                "ExposureTime": "1000",
                "XRayTubeCurrent": per_object.randint(180, 260),
                "Exposure": per_object.randint(180, 260),
                "FilterType": "BODY FILTER",
                "GeneratorPower": "28800",
                "FocalSpots": "0.7",
                "ConvolutionKernel": "STANDARD",
                "RevolutionTime": 1.0,
                "SingleCollimationWidth": 0.625,
                "TotalCollimationWidth": 40.0,
                "TableSpeed": 39.375,
                "TableFeedPerRotation": 39.375,
                "SpiralPitchFactor": 0.984375,
                "CTDIvol": 48.3,
                "RescaleIntercept": "-1024",
                "RescaleSlope": "1",
                "RescaleType": "HU",
            }
        )
    for keyword, value in common.items():
        setattr(ds, keyword, value)

    code = Dataset()
    code.CodeValue = "MRBRN" if mr else "CTHD"
    code.CodingSchemeDesignator = "99LOCAL"
    code.CodeMeaning = ds.StudyDescription.strip()
    ds.ProcedureCodeSequence = Sequence([code])
    references = []
    for offset in (1, 2):
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = _uid(14, series_id + 1, offset)
        references.append(item)
    ds.ReferencedImageSequence = Sequence(references)
    request = Dataset()
    request.RequestedProcedureID = f"RP{study}"
    request.ScheduledProcedureStepID = f"SPS{study}"
    request.RequestedProcedureDescription = ds.StudyDescription.strip()
    ds.RequestAttributesSequence = Sequence([request])

    if large_private:
        block = ds.private_block(0x0009, "VENDOR PROTOCOL 01", create=True)
        block.add_new(
            0x10, "OB", _filler(per_series.randint(24_000, 48_000), series_id)
        )
    if mr:
        header = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
        header.add_new(0x08, "CS", "IMAGE NUM 4")
        header.add_new(0x09, "LO", "1.0")
        header.add_new(0x0B, "DS", "10")
        header.add_new(0x0F, "SH", "Fast")
        header.add_new(0x11, "SH", "No")
        header.add_new(0x12, "SL", [0, 0, -2000])
        header.add_new(0x13, "SL", [0, 0, 0])
        header.add_new(0x14, "IS", [0, 0, 0])
        header.add_new(0x15, "FD", [-12.5, -140.2, 30.8])
        header.add_new(0x17, "DS", "1")
        header.add_new(0x18, "DS", "3500")
        csa = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
        csa.add_new(0x08, "CS", "IMAGE NUM 4")
        csa.add_new(0x09, "LO", "20100114")
        csa.add_new(0x10, "OB", _filler(per_series.randint(3_000, 7_000), i))
        csa.add_new(0x18, "CS", "MR")
        csa.add_new(0x19, "LO", "20100114")
        csa.add_new(0x20, "OB", _filler(per_series.randint(4_000, 9_000), series_id))
        extra = ds.private_block(0x0051, "SIEMENS MR HEADER", create=True)
        extra.add_new(0x08, "CS", "IMAGE NUM 4")
        extra.add_new(0x09, "LO", "1.0")
        extra.add_new(0x0B, "SH", "320p*256")
        extra.add_new(0x0C, "LO", "FoV 250*250")
        extra.add_new(0x0E, "LO", "Tra")
        extra.add_new(0x0F, "LO", "HE1-4;NE1,2")
        extra.add_new(0x11, "LO", "p2")
        extra.add_new(0x13, "SH", "+LPH")
    else:
        ident = ds.private_block(0x0009, "GEMS_IDEN_01", create=True)
        ident.add_new(0x01, "LO", "CT_LIGHTSPEED")
        ident.add_new(0x02, "SH", "CT01")
        ident.add_new(0x04, "SH", "Revolution")
        ident.add_new(0x27, "SL", 1710235512)
        acquisition = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
        for element in range(0x02, 0x40):
            acquisition.add_new(element, "DS", f"{per_object.uniform(-500, 500):.4f}")
        relation = ds.private_block(0x0021, "GEMS_RELA_01", create=True)
        relation.add_new(0x03, "SS", 0)
        relation.add_new(0x35, "SS", 1)
        relation.add_new(0x91, "SS", 0)
        parameters = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
        for element in range(0x10, 0x30):
            parameters.add_new(element, "SS", per_object.randint(0, 30000))
        parameters.add_new(0x39, "IS", [0, 0, 0, 0])
        parameters.add_new(0x61, "UI", _uid(15, series_id + 1))
        parameters.add_new(0x6F, "DS", ["0.0", "0.0", "0.0"])
        parameters.add_new(0x90, "OB", _filler(per_series.randint(200, 2_400), i))
        helios = ds.private_block(0x0045, "GEMS_HELIOS_01", create=True)
        helios.add_new(0x01, "SS", 64)
        helios.add_new(0x02, "FL", 0.625)
        helios.add_new(0x3B, "SS", 1)
    return ds, transfer_syntax, ds.Modality, large_private


def build_object(
    prefix: str, i: int, n: int, size: int, pixels: bytes
) -> tuple[bytes, Planned]:
    """P10 bytes of object i: pydicom writes the header, random pixel data fills it up to `size` bytes."""
    ds, transfer_syntax, modality, large_private = build_header(i, n)
    room = max(1024, size)
    if transfer_syntax in ENCAPSULATED:
        ds.Rows = ds.Columns = 512
    else:
        ds.Columns = 512
        ds.Rows = 1  # placeholder: the real row count follows from the header length
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    header = buffer.getvalue()
    header_length = len(header)
    if transfer_syntax in ENCAPSULATED:
        frame = max(2, (room - header_length - 12 - 24)) // 2 * 2
        element = (
            struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF)
            + struct.pack("<HHI", 0xFFFE, 0xE000, 0)
            + struct.pack("<HHI", 0xFFFE, 0xE000, frame)
            + pixels[:frame]
            + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
        )
    else:
        rows = max(1, (room - header_length - 12) // 1024)
        # Rewrite Rows so the dataset agrees with the pixel data; the header length does not change.
        ds.Rows = rows
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        header = buffer.getvalue()
        assert len(header) == header_length
        length = rows * 1024
        if transfer_syntax == ImplicitVRLittleEndian:
            element_header = struct.pack("<HHI", 0x7FE0, 0x0010, length)
        else:
            endian = ">" if transfer_syntax == ExplicitVRBigEndian else "<"
            element_header = struct.pack(
                f"{endian}HH2sHI", 0x7FE0, 0x0010, b"OW", 0, length
            )
        element = element_header + pixels[:length]
    data = header + element
    return data, Planned(
        key=key_for(prefix, i, n),
        header_length=header_length,
        size=len(data),
        modality=modality,
        transfer_syntax=transfer_syntax,
        large_private=large_private,
    )


TS_NAMES: dict[str, str] = {
    str(ExplicitVRLittleEndian): "explicit LE",
    str(ImplicitVRLittleEndian): "implicit LE",
    str(ExplicitVRBigEndian): "explicit BE",
    str(JPEG2000Lossless): "JPEG 2000",
    str(JPEGLosslessSV1): "JPEG lossless",
}


def transfer_syntax_name(uid: str) -> str:
    return TS_NAMES.get(str(uid), str(uid))
