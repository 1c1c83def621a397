"""The information-model level (patient, study, series, instance) of DICOM attributes. Pure: no Django.

The composer warns when a metadata file names an attribute at the wrong level for the mapping it serves (a patient
attribute in a series-level file), and the editor shows each attribute's level.
"""

from __future__ import annotations

from typing import Literal

PATIENT_GROUP = 0x0010

# The information-model level of the attributes a metadata override is likely to carry (PS3.3 C.7, the Patient,
# General Study, Patient Study, General Series, General Equipment, Frame of Reference, General Image, Image Plane and
# Image Pixel modules). pydicom's dictionary has no level, so this is a table of the common ones; every tag of group
# 0010 counts as patient level. A tag in none of them gets no level warning.
STUDY_LEVEL = frozenset(
    {
        0x00080020,  # StudyDate
        0x00080030,  # StudyTime
        0x00080050,  # AccessionNumber
        0x00080051,  # IssuerOfAccessionNumberSequence
        0x00080090,  # ReferringPhysicianName
        0x00081030,  # StudyDescription
        0x00081032,  # ProcedureCodeSequence
        0x00081048,  # PhysiciansOfRecord
        0x00081060,  # NameOfPhysiciansReadingStudy
        0x00081080,  # AdmittingDiagnosesDescription
        0x00081110,  # ReferencedStudySequence
        0x00200010,  # StudyID
        0x00321032,  # RequestingPhysician
        0x00321060,  # RequestedProcedureDescription
        0x00380010,  # AdmissionID
    }
)
SERIES_LEVEL = frozenset(
    {
        0x00080021,  # SeriesDate
        0x00080031,  # SeriesTime
        0x00080060,  # Modality
        0x00080070,  # Manufacturer
        0x00080080,  # InstitutionName
        0x00080081,  # InstitutionAddress
        0x0008103E,  # SeriesDescription
        0x00081010,  # StationName
        0x00081040,  # InstitutionalDepartmentName
        0x00081050,  # PerformingPhysicianName
        0x00081070,  # OperatorsName
        0x00081090,  # ManufacturerModelName
        0x00180015,  # BodyPartExamined
        0x00181000,  # DeviceSerialNumber
        0x00181020,  # SoftwareVersions
        0x00181030,  # ProtocolName
        0x00185100,  # PatientPosition
        0x00200011,  # SeriesNumber
        0x00200052,  # FrameOfReferenceUID
        0x00200060,  # Laterality
        0x00201040,  # PositionReferenceIndicator
        0x00400244,  # PerformedProcedureStepStartDate
        0x00400245,  # PerformedProcedureStepStartTime
        0x00400254,  # PerformedProcedureStepDescription
    }
)
INSTANCE_LEVEL = frozenset(
    {
        0x00080008,  # ImageType
        0x00080012,  # InstanceCreationDate
        0x00080013,  # InstanceCreationTime
        0x00080016,  # SOPClassUID
        0x00080018,  # SOPInstanceUID (reported as uid_changed, see _content_problems)
        0x00080022,  # AcquisitionDate
        0x00080023,  # ContentDate
        0x0008002A,  # AcquisitionDateTime
        0x00080032,  # AcquisitionTime
        0x00080033,  # ContentTime
        0x00180050,  # SliceThickness
        0x00200012,  # AcquisitionNumber
        0x00200013,  # InstanceNumber
        0x00200032,  # ImagePositionPatient
        0x00200037,  # ImageOrientationPatient
        0x00201041,  # SliceLocation
        0x00280002,  # SamplesPerPixel
        0x00280004,  # PhotometricInterpretation
        0x00280008,  # NumberOfFrames
        0x00280010,  # Rows
        0x00280011,  # Columns
        0x00280030,  # PixelSpacing
        0x00280100,  # BitsAllocated
        0x00280101,  # BitsStored
        0x00280102,  # HighBit
        0x00280103,  # PixelRepresentation
        0x00281050,  # WindowCenter
        0x00281051,  # WindowWidth
        0x00281052,  # RescaleIntercept
        0x00281053,  # RescaleSlope
        0x00282110,  # LossyImageCompression
    }
)

Level = Literal["patient", "study", "series", "instance"]


def level_of(tag: int) -> Level | None:
    """The information-model level of a top-level attribute, from the table above; None when it is not listed."""
    if tag >> 16 == PATIENT_GROUP:
        return "patient"
    if tag in STUDY_LEVEL:
        return "study"
    if tag in SERIES_LEVEL:
        return "series"
    if tag in INSTANCE_LEVEL:
        return "instance"
    return None
