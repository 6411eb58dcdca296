// sluice-rtbh lands with issue 6
